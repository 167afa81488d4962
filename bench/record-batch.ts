/**
 * The books' own cost, without HTTP or the queue: recordUsageBatch on batches spread over funded
 * accounts (every charge draws a credit bucket) and over unfunded ones (no bucket is read),
 * interleaved round by round so a busy machine slows both alike.
 *   node --import tsx bench/record-batch.ts [--rounds 6] [--batches 40] [--size 250] [--accounts 200] [--concurrency 8]
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import { recordGrant } from "../src/books/grants.js";
import { type PricedUsage, recordUsageBatch } from "../src/books/record-usage.js";
import { ENFORCEMENT_OFF } from "../src/platform/config.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { decimal } from "../src/pricing/decimal.js";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "6" },
    batches: { type: "string", default: "40" },
    size: { type: "string", default: "250" },
    accounts: { type: "string", default: "200" },
    concurrency: { type: "string", default: "8" },
  },
});
const [rounds, batches, size, accountCount, concurrency] = [flags.rounds, flags.batches, flags.size, flags.accounts, flags.concurrency].map(Number) as [number, number, number, number, number];
const base = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

function priced(key: string, account: string, credits: bigint): PricedUsage {
  return {
    event: {
      idempotencyKey: key, billingAccountId: account, status: "success", cacheHit: false, model: "m", modelGroup: null,
      modelMapKey: null, provider: null, promptTokens: 1, completionTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0,
      reasoningTokens: 0, reportedCostUsd: null, eventTime: null,
    } as PricedUsage["event"],
    charge: {
      pricingSource: "price_book", rateStep: "price_book", priceEntry: "m", contextTier: null, serviceTier: null, lines: [],
      providerCostUsd: decimal(`${credits}e-7`), chargedCredits: credits, reportedCostUsd: null, reason: null, divergence: null,
    },
  };
}

async function freshDatabase(funded: boolean) {
  const name = `spend_ingest_rb_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  await runMigrations(url.toString());
  const pool = new pg.Pool({ connectionString: url.toString(), max: concurrency });
  const accounts = Array.from({ length: accountCount }, (_, n) => `rb-${n}`);
  for (const account of accounts) {
    // Unfunded accounts still exist (a grant of 1, spent by the first charge), so both sides create none.
    await recordGrant(pool, { billingAccountId: account, credits: funded ? 10n ** 15n : 1n, reference: `rb-${account}`, reason: "bench" });
  }
  return { name, pool, accounts, calls: 0 };
}

type Side = Awaited<ReturnType<typeof freshDatabase>>;

async function round(side: Side): Promise<number> {
  const started = process.hrtime.bigint();
  let next = 0;
  // As the workers do: `concurrency` batches in flight, each spread over the accounts.
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < batches) {
      next += 1;
      const charges = Array.from({ length: size }, () => {
        side.calls += 1;
        return priced(`rb-${side.calls}`, side.accounts[side.calls % side.accounts.length]!, 1000n + BigInt(side.calls % 97));
      });
      await recordUsageBatch(side.pool, { charges, quarantines: [], priceBookHash: "bench", lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
    }
  }));
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const funded = await freshDatabase(true);
const unfunded = await freshDatabase(false);
const times: Record<"funded" | "unfunded", number[]> = { funded: [], unfunded: [] };
try {
  await round(funded);
  await round(unfunded); // warm-up, not counted
  for (let r = 0; r < rounds; r++) {
    const order: Array<["funded" | "unfunded", Side]> = r % 2 === 0 ? [["funded", funded], ["unfunded", unfunded]] : [["unfunded", unfunded], ["funded", funded]];
    for (const [label, side] of order) times[label].push(await round(side));
  }
} finally {
  await funded.pool.end();
  await unfunded.pool.end();
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  for (const name of [funded.name, unfunded.name]) await admin.query(`DROP DATABASE ${name}`);
  await admin.end();
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const perSecond = (ms: number) => Math.round((batches * size) / (ms / 1000));
// Each round's pair ran back to back, under the same load: their ratio is what a busy machine leaves alone.
const pairRatio = median(times.funded.map((ms, r) => times.unfunded[r]! / ms));
console.log(JSON.stringify({
  funded: perSecond(median(times.funded)),
  unfunded: perSecond(median(times.unfunded)),
  ratio: Math.round(pairRatio * 1000) / 1000,
  rounds: times,
}));
