/**
 * What one charged call costs the books in PostgreSQL: statements per job (every query a batch's
 * client sends, BEGIN and COMMIT included), bytes per call by table and index (heap with its free
 * space and visibility maps, TOAST, each index) and WAL bytes per call, after `batches` batches of
 * `size` calls on funded accounts (each charge draws a credit bucket) and as many on unfunded
 * ones (each charge takes the balance further below zero). The usage rollup runs after each
 * phase, so its table is counted too. WAL is the whole server's: run it on a PostgreSQL of its own
 * (DATABASE_URL) for that figure.
 * With --keep the database stays (its name is printed), for pg_dump to be timed on it.
 *   node --import tsx bench/books-footprint.ts [--batches 40] [--size 512] [--accounts 200] [--keep]
 */
import { createHash, randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import { recordGrant } from "../src/books/grants.js";
import { type PricedUsage, recordUsageBatch } from "../src/books/record-usage.js";
import { ENFORCEMENT_OFF } from "../src/books/enforcement.js";
import { rollUpUsage } from "../src/books/usage-rollup.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { onServer, pricedUsage } from "./books-input.js";

const { values: flags } = parseArgs({
  options: {
    batches: { type: "string", default: "40" },
    size: { type: "string", default: "512" },
    accounts: { type: "string", default: "200" },
    keep: { type: "boolean", default: false },
  },
});
const [batches, size, accountCount] = [flags.batches, flags.size, flags.accounts].map(Number) as [number, number, number];
const base = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const name = `spend_ingest_bf_${randomBytes(4).toString("hex")}`;
const url = new URL(base);
url.pathname = `/${name}`;

// Shaped as LiteLLM's calls: a provider-prefixed model, 1,200 + 300 tokens, each account's calls from two keys of its team.
function priced(key: string, account: string, credits: bigint, apiKey: number): PricedUsage {
  const keyHash = createHash("sha256").update(`${account}-${apiKey}`).digest("hex");
  return pricedUsage(
    { idempotencyKey: key, billingAccountId: account, model: "openai/gpt-4o-mini", modelGroup: "gpt-4o-mini", provider: "openai", promptTokens: 1200, completionTokens: 300, eventTime: new Date().toISOString(), keyHash, teamId: `team-${account}` },
    credits,
    "gpt-4o-mini",
  );
}


await onServer(base, `CREATE DATABASE ${name}`);
const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
// Counts what the books send: every client the pool hands out counts its queries.
let statements = 0;
pool.on("connect", (client) => {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    statements += 1;
    return query(...args);
  };
});
const priceBookHash = createHash("sha256").update("bench price book").digest("hex");

type Sizes = Map<string, number>;

// Every relation of the public schema by name: heap (main, fsm and vm forks), its TOAST table with its index, and each index.
async function relationSizes(): Promise<Sizes> {
  const { rows } = await pool.query<{ name: string; bytes: string }>(
    `SELECT c.relname || CASE c.relkind WHEN 'i' THEN ' (index)' ELSE '' END AS name,
            (CASE c.relkind WHEN 'i' THEN pg_relation_size(c.oid) ELSE pg_table_size(c.oid) END)::text AS bytes
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')`,
  );
  return new Map(rows.map((row) => [row.name, Number(row.bytes)]));
}

async function walLsn(): Promise<string> {
  return (await pool.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]!.lsn;
}

let calls = 0;
async function phase(label: string, accounts: string[]) {
  // Each phase's WAL starts after a checkpoint, as a deployment's does every checkpoint_timeout:
  // full-page images of the pages it touches first are counted. Superuser only; skipped otherwise.
  await pool.query("CHECKPOINT").catch(() => {});
  const [sizesBefore, lsnBefore] = [await relationSizes(), await walLsn()];
  const statementsBefore = statements;
  for (let batch = 0; batch < batches; batch++) {
    const charges = Array.from({ length: size }, () => {
      calls += 1;
      return priced(`chatcmpl-${randomBytes(15).toString("base64url")}`, accounts[calls % accounts.length]!, 1000n + BigInt(calls % 97), calls % 2);
    });
    await recordUsageBatch(pool, { charges, quarantines: [], priceBookHash, lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
  }
  const perJob = (statements - statementsBefore) / batches;
  await rollUpUsage(pool);
  const walBytes = Number((await pool.query<{ bytes: string }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes", [lsnBefore])).rows[0]!.bytes);
  const sizesAfter = await relationSizes();
  const events = batches * size;
  const byRelation: Record<string, number> = {};
  let total = 0;
  for (const [relation, bytes] of [...sizesAfter].sort(([a], [b]) => a.localeCompare(b))) {
    const grown = bytes - (sizesBefore.get(relation) ?? 0);
    if (grown === 0) continue;
    byRelation[relation] = Math.round((grown / events) * 10) / 10;
    total += grown;
  }
  console.log(JSON.stringify({ phase: label, events, statementsPerJob: perJob, walBytesPerCall: Math.round(walBytes / events), bytesPerCall: Math.round(total / events), byRelation }, null, 1));
}

try {
  await runMigrations(url.toString());
  const funded = Array.from({ length: accountCount }, (_, n) => `acct-funded-${n}`);
  const unfunded = Array.from({ length: accountCount }, (_, n) => `acct-unfunded-${n}`);
  for (const account of funded) await recordGrant(pool, { billingAccountId: account, credits: 10n ** 15n, reference: `bf-${account}`, reason: "bench" });
  await phase("funded", funded);
  await phase("unfunded", unfunded);
} finally {
  await pool.end();
  if (flags.keep) console.log(JSON.stringify({ kept: name }));
  else await onServer(base, `DROP DATABASE ${name}`);
}
