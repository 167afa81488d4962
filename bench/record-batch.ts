/**
 * The books' own cost, without HTTP or the queue: recordUsageBatch on batches of calls spread
 * over funded accounts (every charge draws a credit bucket), `concurrency` batches in flight as
 * the workers run them, and the usage rollup every 5 s (half its default interval) beside them.
 * Besides events/s it prints the CPU time PostgreSQL's backends and this process spent per event:
 * on a shared machine wall time moves with the neighbours' load, CPU time far less, so two commits
 * compare by it (run each a few times, alternating).
 *   node --import tsx bench/record-batch.ts [--rounds 6] [--batches 40] [--size 512] [--accounts 200] [--concurrency 8]
 */
import { createHash, randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import { recordGrant } from "../src/books/grants.js";
import { type PricedUsage, recordUsageBatch } from "../src/books/record-usage.js";
import { ENFORCEMENT_OFF } from "../src/books/enforcement.js";
import { rollUpUsage } from "../src/books/usage-rollup.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { backendCpuMs } from "./backend-cpu.js";
import { onServer, pricedUsage } from "./books-input.js";

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
  const keyHash = createHash("sha256").update(`${account}-${apiKey}`).digest("hex");
  return pricedUsage({ idempotencyKey: key, billingAccountId: account, keyHash, teamId: `team-${account}` }, credits);
}


await onServer(base, `CREATE DATABASE ${name}`);
const pool = new pg.Pool({ connectionString: url.toString(), max: concurrency + 1, idleTimeoutMillis: 0 });
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
  // On its own connection of the pool, so its backend's CPU is counted with the charges'.
  let rolling = true;
  const roller = (async () => {
    while (rolling) {
      await new Promise((resolve) => setTimeout(resolve, 5000));
      await rollUpUsage(pool);
    }
  })();
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
  rolling = false;
  await roller;
} finally {
  await pool.end();
  await onServer(base, `DROP DATABASE ${name}`);
}
