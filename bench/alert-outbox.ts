/**
 * What the alert outbox costs on unfunded accounts, where every charge raises
 * `inv_post_call_negative_balance`: batches of calls charged by recordUsageBatch and their alerts
 * delivered by deliverCommittedAlerts, as the worker does, then the outbox's bytes (heap, indexes
 * and TOAST) per charged call, the CPU PostgreSQL's backends spent per call, and the statements
 * each job sent (the charge's transaction and the delivery's).
 *   node --import tsx bench/alert-outbox.ts [--calls 50000] [--size 512] [--accounts 200]
 */
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { parseArgs } from "node:util";
import pg from "pg";
import pino from "pino";
import { deliverCommittedAlerts } from "../src/books/alert-outbox.js";
import { ENFORCEMENT_OFF } from "../src/books/enforcement.js";
import { type PricedUsage, recordUsageBatch } from "../src/books/record-usage.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { backendCpuMs } from "./backend-cpu.js";
import { onServer, pricedUsage } from "./books-input.js";

const { values: flags } = parseArgs({
  options: {
    calls: { type: "string", default: "50000" },
    size: { type: "string", default: "512" },
    accounts: { type: "string", default: "200" },
  },
});
const [calls, size, accountCount] = [flags.calls, flags.size, flags.accounts].map(Number) as [number, number, number];
const base = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const name = `spend_ingest_ao_${randomBytes(4).toString("hex")}`;
const url = new URL(base);
url.pathname = `/${name}`;

function priced(key: string, account: string, credits: bigint): PricedUsage {
  return pricedUsage({ idempotencyKey: key, billingAccountId: account }, credits);
}


await onServer(base, `CREATE DATABASE ${name}`);
// One connection: every statement is this bench's, and its backend's CPU is all the outbox's path.
const pool = new pg.Pool({ connectionString: url.toString(), max: 1, idleTimeoutMillis: 0 });
let statements = 0;
pool.on("connect", (client) => {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => ((statements += 1), query(...args));
});
const logger = pino(new Writable({ write: (_chunk, _encoding, done) => done() }));
const accounts = Array.from({ length: accountCount }, (_, n) => `ao-${n}`);

try {
  await runMigrations(url.toString());
  const jobs = Math.ceil(calls / size);
  let charged = 0;
  let alerts = 0;
  let deliveryStatements = 0;
  const [cpuBefore, statementsBefore] = [await backendCpuMs(base, name), statements];
  for (let job = 0; job < jobs; job++) {
    const charges = Array.from({ length: Math.min(size, calls - job * size) }, (_, n) => {
      const call = job * size + n;
      return priced(`ao-${call}`, accounts[call % accounts.length]!, 1000n + BigInt(call % 97));
    });
    const result = await recordUsageBatch(pool, { charges, quarantines: [], priceBookHash: "bench", lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
    const beforeDelivery = statements;
    await deliverCommittedAlerts(pool, logger, result.alerts);
    deliveryStatements += statements - beforeDelivery;
    charged += result.charged.length;
    alerts += result.alerts.length;
  }
  const [cpuMs, statementCount] = [(await backendCpuMs(base, name)) - cpuBefore, statements - statementsBefore];
  const undelivered = (await pool.query("SELECT count(*)::int AS n FROM alert_outbox WHERE delivered_at IS NULL")).rows[0].n;
  const sizes = async () =>
    (await pool.query(
      `SELECT pg_relation_size('alert_outbox') AS heap, pg_indexes_size('alert_outbox') AS indexes,
              coalesce(pg_total_relation_size(reltoastrelid), 0) AS toast
         FROM pg_class WHERE relname = 'alert_outbox'`,
    )).rows[0] as { heap: string; indexes: string; toast: string };
  const perCall = (bytes: { heap: string; indexes: string; toast: string }) => {
    const [heap, indexes, toast] = [bytes.heap, bytes.indexes, bytes.toast].map(Number) as [number, number, number];
    return { heap: Math.round(heap / charged), indexes: Math.round(indexes / charged), toast: Math.round(toast / charged), total: Math.round((heap + indexes + toast) / charged) };
  };
  const asWritten = perCall(await sizes());
  await pool.query("VACUUM alert_outbox");
  const vacuumed = perCall(await sizes());
  console.log(JSON.stringify({
    charged, alerts, jobs, undelivered,
    backendCpuUsPerCall: Math.round((cpuMs * 1000) / charged),
    statementsPerJob: Number((statementCount / jobs).toFixed(2)),
    deliveryStatementsPerJob: Number((deliveryStatements / jobs).toFixed(2)),
    outboxBytesPerCall: { asWritten, vacuumed },
  }));
} finally {
  await pool.end();
  await onServer(base, `DROP DATABASE ${name}`);
}
