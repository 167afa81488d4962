/**
 * The books' own cost, without HTTP or the queue: recordUsageBatch on batches of calls spread
 * over funded accounts (every charge draws a credit bucket), `concurrency` batches in flight as
 * the workers run them. Besides events/s it prints the CPU time PostgreSQL's backends and this
 * process spent per event: on a shared machine wall time moves with the neighbours' load, CPU time
 * far less, so two commits compare by it (run each a few times, alternating).
 *   node --import tsx bench/record-batch.ts [--rounds 6] [--batches 40] [--size 512] [--accounts 200] [--concurrency 8]
 */
import { createHash, randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import { recordGrant } from "../src/books/grants.js";
import { type PricedUsage, recordUsageBatch } from "../src/books/record-usage.js";
import { ENFORCEMENT_OFF } from "../src/books/enforcement.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { decimal } from "../src/pricing/decimal.js";
import { backendCpuMs } from "./backend-cpu.js";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "6" },
    batches: { type: "string", default: "40" },
    size: { type: "string", default: "512" },
    accounts: { type: "string", default: "200" },
    concurrency: { type: "string", default: "8" },
  },
});
const [rounds, batches, size, accountCount, concurrency] = [flags.rounds, flags.batches, flags.size, flags.accounts, flags.concurrency].map(Number) as [
  number,
  number,
  number,
  number,
  number,
];
const base = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const name = `spend_ingest_rb_${randomBytes(4).toString("hex")}`;
const url = new URL(base);
url.pathname = `/${name}`;

// Each account's calls come from two keys of its team, as events carry them (usage is kept by key and team).
function priced(key: string, account: string, credits: bigint, apiKey: number): PricedUsage {
  return {
    event: {
      idempotencyKey: key, billingAccountId: account, status: "success", cacheHit: false, model: "m", modelGroup: null,
      modelMapKey: null, provider: null, promptTokens: 1, completionTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0,
      reasoningTokens: 0, reportedCostUsd: null, eventTime: null,
      keyHash: createHash("sha256").update(`${account}-${apiKey}`).digest("hex"), teamId: `team-${account}`,
    } as PricedUsage["event"],
    charge: {
      pricingSource: "price_book", rateStep: "price_book", priceEntry: "m", contextTier: null, serviceTier: null, lines: [],
      providerCostUsd: decimal(`${credits}e-7`), chargedCredits: credits, reportedCostUsd: null, reason: null, divergence: null,
    },
  };
}

async function onServer(sql: string) {
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    return (await admin.query(sql)).rows;
  } finally {
    await admin.end();
  }
}

await onServer(`CREATE DATABASE ${name}`);
const pool = new pg.Pool({ connectionString: url.toString(), max: concurrency, idleTimeoutMillis: 0 });
const accounts = Array.from({ length: accountCount }, (_, n) => `rb-${n}`);
let calls = 0;

async function round(): Promise<{ ms: number; backendCpuMs: number; ownCpuMs: number }> {
  const [startedAt, backendBefore, ownBefore] = [process.hrtime.bigint(), await backendCpuMs(base, name), process.cpuUsage()];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (; next < batches; next++) {
      const charges = Array.from({ length: size }, () => {
        calls += 1;
        return priced(`rb-${calls}`, accounts[calls % accounts.length]!, 1000n + BigInt(calls % 97), Math.floor(calls / accounts.length) % 2);
      });
      await recordUsageBatch(pool, { charges, quarantines: [], priceBookHash: "bench", lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
    }
  }));
  const own = process.cpuUsage(ownBefore);
  return { ms: Number(process.hrtime.bigint() - startedAt) / 1e6, backendCpuMs: (await backendCpuMs(base, name)) - backendBefore, ownCpuMs: (own.user + own.system) / 1000 };
}

try {
  await runMigrations(url.toString());
  for (const account of accounts) {
    await recordGrant(pool, { billingAccountId: account, credits: 10n ** 15n, reference: `rb-${account}`, reason: "bench" });
  }
  await round(); // warm-up, not counted
  const measured = [];
  for (let r = 0; r < rounds; r++) measured.push(await round());
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const events = batches * size;
  console.log(JSON.stringify({
    eventsPerSecond: Math.round(events / (median(measured.map((m) => m.ms)) / 1000)),
    backendCpuUsPerEvent: Math.round((median(measured.map((m) => m.backendCpuMs)) * 1000) / events),
    ownCpuUsPerEvent: Math.round((median(measured.map((m) => m.ownCpuMs)) * 1000) / events),
  }));
} finally {
  await pool.end();
  await onServer(`DROP DATABASE ${name}`);
}
