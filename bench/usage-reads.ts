/**
 * The usage API's latency over HTTP, against a real receiver (the build in dist/) reading a
 * throwaway database's usage_hourly. The API reads nothing else, so the data is written straight
 * into it, shaped as the rollup would leave it: one account of `--receipts` calls a month (the
 * issue's target: 10 million), and `--accounts` others, over `--months` UTC months.
 *
 *   npm run bench:usage -- [--receipts 10000000] [--keys 40] [--models-per-key 3] [--models 8]
 *                          [--teams 8] [--accounts 10000] [--months 2] [--requests 200]
 *
 * The large account's keys each use a few models, every one of them in every hour (13,000 calls
 * an hour leave no key idle), so a month holds keys × models-per-key rows an hour. Calls fall
 * off with the key's rank and the model's (1/rank), and rise and fall over the UTC day. Each
 * other account uses one or two models with one key, active in about one hour in ten. Rows are
 * written hour by hour, every account's interleaved, as the rollup writes them, so one account's
 * month is spread over the table rather than packed together. Each case is timed sequentially
 * (keep-alive, after a warm-up; reads of every account a fifth as often); it prints p50 / p95 / p99,
 * PostgreSQL's CPU time per request (a shared machine's load moves it far less than wall time) and
 * the plans of two reads, and writes bench/results/<date>-usage-reads.json.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { parseArgs } from "node:util";
import pg from "pg";
import { type UsageQuery, usageStatement } from "../src/books/usage-reads.js";
import { drizzleOver } from "../src/platform/db/client.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { deleteKeysUnder } from "../test/support/redis-keys.js";
import { ServiceProcess } from "../test/support/service-process.js";
import { ADMIN_DATABASE_URL, databaseUrlFor, TEST_REDIS_URL } from "../test/support/test-env.js";
import { backendCpuMs } from "./backend-cpu.js";

const { values: flags } = parseArgs({
  options: {
    receipts: { type: "string", default: "10000000" },
    keys: { type: "string", default: "40" },
    "models-per-key": { type: "string", default: "3" },
    models: { type: "string", default: "8" },
    teams: { type: "string", default: "8" },
    accounts: { type: "string", default: "10000" },
    months: { type: "string", default: "2" },
    requests: { type: "string", default: "200" },
  },
});
const [receipts, keys, modelsPerKey, models, teams, accountCount, months, requests] = [
  flags.receipts, flags.keys, flags["models-per-key"], flags.models, flags.teams, flags.accounts, flags.months, flags.requests,
].map(Number) as [number, number, number, number, number, number, number, number];

const RUN = `spend_ingest_usage_bench_${randomBytes(4).toString("hex")}`;
const databaseUrl = databaseUrlFor(RUN);
const ADMIN_TOKEN = `bench-admin-${randomBytes(8).toString("hex")}`;
const BIG = "bench-big";
// The month read is the last of `--months`, a 31-day one (January 2027): an hourly read's longest.
const MONTH = { from: "2027-01-01T00:00:00Z", to: "2027-02-01T00:00:00Z" };
const firstHour = new Date(Date.UTC(2027, 1 - months, 1)).toISOString();

/** Harmonic number: what the 1/rank weights add up to. */
const harmonic = (n: number) => Array.from({ length: n }, (_, i) => 1 / (i + 1)).reduce((a, b) => a + b, 0);

async function fill(pool: pg.Pool): Promise<void> {
  const hoursPerMonth = 744;
  // Calls of key k's j-th model in an hour: scale / ((k + 1)(j + 1)), times the day's curve (mean 1).
  const scale = receipts / (hoursPerMonth * harmonic(keys) * harmonic(modelsPerKey));
  const started = performance.now();
  // One statement, ordered by hour: the heap holds each hour's rows of every account together.
  await pool.query(
    `INSERT INTO usage_hourly
     SELECT account, hour, 'model-' || model, encode(sha256(convert_to(key_name, 'UTF8')), 'hex'), team,
            calls, calls / 10, calls - calls / 10 - calls / 20, calls / 20,
            calls * 900, calls * 300, calls * 40, calls * 250, calls * 30,
            (calls - calls / 10) * (20 + model * 15), (calls - calls / 10 - calls / 20) * (20 + model * 15), (calls / 20) * (20 + model * 15)
     FROM (
       SELECT $1::text AS account, h AS hour, (k * 3 + j) % $2::int AS model, 'key-' || k AS key_name, 'team-' || (k % $3) AS team,
              greatest(1, round($4::float8 / ((k + 1) * (j + 1)) * (1 + 0.5 * sin(extract(hour from h at time zone 'UTC') * pi() / 12))))::bigint AS calls
       FROM generate_series($5::timestamptz, $6::timestamptz - interval '1 hour', interval '1 hour') h,
            generate_series(0, $7 - 1) k, generate_series(0, $8 - 1) j
       UNION ALL
       SELECT 'bench-account-' || a, h, (a + j) % $2, 'key-of-' || a, 'team-' || (a % 500), 1 + (a + j * 7) % 50
       FROM generate_series(0, $9 - 1) a, generate_series($5::timestamptz, $6::timestamptz - interval '1 hour', interval '1 hour') h, generate_series(0, 1) j
       WHERE (a * 7919 + (extract(epoch from h)::bigint / 3600) * 31 + j * 13) % 10 = 0
     ) rows
     ORDER BY hour, account`,
    [BIG, models, teams, scale, firstHour, MONTH.to, keys, modelsPerKey, accountCount],
  );
  await pool.query(`INSERT INTO accounts (id) SELECT DISTINCT billing_account_id FROM usage_hourly`);
  await pool.query("VACUUM ANALYZE usage_hourly");
  process.stderr.write(`filled in ${Math.round((performance.now() - started) / 1000)} s\n`);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function time(url: string, requests: number): Promise<{ p50: number; p95: number; p99: number; postgresCpuMsPerRequest: number; rows: number }> {
  const get = async () => {
    const response = await fetch(url, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const body = (await response.json()) as { rows?: unknown[] };
    if (response.status !== 200) throw new Error(`${url}: ${response.status} ${JSON.stringify(body)}`);
    return body.rows!.length;
  };
  for (let n = 0; n < 10; n++) await get();
  const ms: number[] = [];
  let rows = 0;
  const cpuBefore = await backendCpuMs(ADMIN_DATABASE_URL, RUN);
  for (let n = 0; n < requests; n++) {
    const started = performance.now();
    rows = await get();
    ms.push(performance.now() - started);
  }
  const cpuMs = (await backendCpuMs(ADMIN_DATABASE_URL, RUN)) - cpuBefore;
  const round = (value: number) => Math.round(value * 10) / 10;
  return { p50: round(percentile(ms, 50)), p95: round(percentile(ms, 95)), p99: round(percentile(ms, 99)), postgresCpuMsPerRequest: round(cpuMs / requests), rows };
}

async function main() {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${RUN}`);
  // Connections kept open: a backend that closes takes its CPU time out of the count.
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, idleTimeoutMillis: 0 });
  pool.on("error", () => {});
  const receiver = new ServiceProcess("receiver", {
    DATABASE_URL: databaseUrl,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: RUN,
    INGEST_TOKENS: `bench-ingest-${randomBytes(8).toString("hex")}`,
    ADMIN_TOKEN,
    LOG_LEVEL: "warn",
  }, { nodeArgs: ["--max-old-space-size=256", "--max-semi-space-size=16"] });
  try {
    await runMigrations(databaseUrl);
    await fill(pool);
    const [shape] = (
      await pool.query(
        `SELECT count(*)::int AS rows, count(*) FILTER (WHERE billing_account_id = $1 AND hour >= $2 AND hour < $3)::int AS big_month_rows,
                (sum(calls) FILTER (WHERE billing_account_id = $1 AND hour >= $2 AND hour < $3))::bigint::text AS big_month_calls,
                count(DISTINCT billing_account_id)::int AS accounts,
                count(*) FILTER (WHERE billing_account_id <> $1 AND hour >= $2 AND hour < $3)::int AS others_month_rows
         FROM usage_hourly`,
        [BIG, MONTH.from, MONTH.to],
      )
    ).rows;
    const [size] = (await pool.query(`SELECT pg_size_pretty(pg_total_relation_size('usage_hourly')) AS size`)).rows;
    process.stderr.write(`usage_hourly: ${JSON.stringify({ ...shape, ...size })}\n`);
    await receiver.start();

    const month = `from=${MONTH.from}&to=${MONTH.to}`;
    const cases: Array<[string, string]> = [];
    for (const granularity of ["hour", "day", "month"]) {
      for (const groupBy of [undefined, "model", "key", "team"]) {
        cases.push([`account ${granularity}${groupBy ? ` by ${groupBy}` : ""}`, `/v1/accounts/${BIG}/usage?${month}&granularity=${granularity}${groupBy ? `&group_by=${groupBy}` : ""}&limit=1000`]);
      }
    }
    cases.push([`all accounts: month, top 10 accounts`, `/v1/usage?${month}&granularity=month&group_by=account&limit=10`]);
    cases.push([`all accounts: month, top 1,000 accounts`, `/v1/usage?${month}&granularity=month&group_by=account&limit=1000`]);
    cases.push([`all accounts: day totals`, `/v1/usage?${month}&granularity=day`]);
    cases.push([`all accounts: day, top 10 accounts, one day`, `/v1/usage?from=2027-01-15T00:00:00Z&to=2027-01-16T00:00:00Z&granularity=day&group_by=account&limit=10`]);

    // What PostgreSQL does for the API's own statements: an index range, never the whole table.
    const db = drizzleOver(pool);
    const plans: Record<string, string> = {};
    const reads: Array<[string, UsageQuery]> = [
      ["account, hour by key", { billingAccountId: BIG, from: new Date(MONTH.from), to: new Date(MONTH.to), granularity: "hour", groupBy: "key", limit: 1000 }],
      ["all accounts, month by account", { from: new Date(MONTH.from), to: new Date(MONTH.to), granularity: "month", groupBy: "account", limit: 10 }],
    ];
    for (const [label, read] of reads) {
      const { sql, params } = usageStatement(db, read).toSQL();
      const { rows } = await pool.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
      const scans: string[] = [];
      const visit = (node: Record<string, any>) => {
        if (String(node["Node Type"]).includes("Scan")) scans.push(`${node["Node Type"]}${node["Index Name"] ? ` on ${node["Index Name"]}` : ""}`);
        for (const child of node.Plans ?? []) visit(child);
      };
      visit(rows[0]["QUERY PLAN"][0].Plan);
      plans[label] = scans.join(", ");
    }

    const results: Record<string, unknown> = {};
    for (const [label, path] of cases) {
      // A read of every account aggregates every account's month: fewer of them.
      let measured;
      try {
        measured = await time(`${receiver.url}${path}`, path.startsWith("/v1/usage") ? Math.max(10, Math.round(requests / 5)) : requests);
      } catch (error) {
        // A read that does not answer (the receiver closes a socket quiet for 10 s) is a result too.
        results[label] = { failed: String((error as Error).cause ?? error) };
        process.stderr.write(`${label.padEnd(44)} failed: ${String((error as Error).cause ?? error)}\n`);
        continue;
      }
      results[label] = measured;
      process.stderr.write(
        `${label.padEnd(44)} p50 ${measured.p50} ms  p95 ${measured.p95} ms  p99 ${measured.p99} ms  PostgreSQL CPU ${measured.postgresCpuMsPerRequest} ms  (${measured.rows} rows)  load ${loadavg()[0]!.toFixed(1)}\n`,
      );
    }
    const report = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version, loadAverageAtEnd: loadavg()[0] },
      settings: { receipts, keys, modelsPerKey, models, teams, accounts: accountCount, months, requests },
      table: { ...shape, ...size },
      plans,
      results,
    };
    mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
    const file = `${report.date.replace(/[:.]/g, "-")}-usage-reads.json`;
    writeFileSync(new URL(`./results/${file}`, import.meta.url), `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(plans, null, 2)}\nreport: bench/results/${file}\n`);
  } finally {
    await receiver.kill("SIGTERM");
    // The receiver opened the queue, which writes its meta key.
    await deleteKeysUnder(RUN, TEST_REDIS_URL);
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${RUN} WITH (FORCE)`);
    await admin.end();
  }
}

await main();
