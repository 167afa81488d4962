/**
 * The console's page times: a throwaway database with `--receipts` charges (seeded in SQL as the
 * browser test seeds them), a receiver serving the console over HTTP, and each page asked for
 * `--rounds` times after one warm-up, signed in. Prints p50 and p95 per page against the issue's
 * target (every page under 1 s) and writes bench/results/<date>-console.json.
 *
 *   npm run bench:console -- [--receipts 100000] [--accounts 200] [--rounds 30]
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import pg from "pg";
import { parseSettings, ROLES } from "../src/platform/config.js";
import { closeDeps, createDeps, firstConnectionSettled } from "../src/platform/deps.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { buildServer } from "../src/receiver/server.js";
import { seedChargedBooks } from "../test/support/console-seed.js";
import { deleteKeysUnder } from "../test/support/redis-keys.js";
import { ADMIN_DATABASE_URL, databaseUrlFor, TEST_REDIS_URL } from "../test/support/test-env.js";

const { values: flags } = parseArgs({
  options: {
    receipts: { type: "string", default: "100000" },
    accounts: { type: "string", default: "200" },
    rounds: { type: "string", default: "30" },
  },
});
const RUN = `spend_ingest_console_bench_${randomBytes(4).toString("hex")}`;
const CONSOLE_TOKEN = `bench-console-${randomBytes(8).toString("hex")}`;
const TARGET_MS = 1000;

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

async function main() {
  const receipts = Number(flags.receipts);
  const accounts = Array.from({ length: Number(flags.accounts) }, (_, index) => `acct-${String(index).padStart(4, "0")}`);
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${RUN}`);
  const settings = parseSettings(ROLES.receiver, {
    DATABASE_URL: databaseUrlFor(RUN),
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: RUN,
    INGEST_TOKENS: `bench-ingest-${randomBytes(8).toString("hex")}`,
    ADMIN_TOKEN: `bench-admin-${randomBytes(8).toString("hex")}`,
    CONSOLE_TOKEN,
    LOW_BALANCE_THRESHOLDS: "1000",
    LOG_LEVEL: "error",
  });
  const deps = createDeps(settings);
  try {
    await runMigrations(settings.databaseUrl);
    const seedStarted = performance.now();
    await seedChargedBooks(deps.database.pool, { receipts, accounts, models: ["gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-pro", "o3", "llama-3.3"], days: 30 });
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    await firstConnectionSettled(deps.redis);
    const app = await buildServer(deps);
    const base = await app.listen({ port: 0, host: "127.0.0.1" });
    try {
      const signIn = await fetch(`${base}/console/sign-in`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: `token=${CONSOLE_TOKEN}`,
      });
      const cookie = signIn.headers.get("set-cookie")!.split(";")[0]!;
      const { rows } = await deps.database.pool.query<{ idempotency_key: string }>(
        "SELECT idempotency_key FROM charge_receipts WHERE billing_account_id = $1 ORDER BY id DESC LIMIT 1",
        [accounts[0]],
      );
      const pages: Record<string, string> = {
        overview: "/console",
        "accounts by id": "/console/accounts",
        "accounts by balance": "/console/accounts?sort=balance",
        "accounts by last use": "/console/accounts?sort=last_used",
        "accounts search": "/console/accounts?q=acct-01",
        account: `/console/accounts/${accounts[0]}`,
        receipt: `/console/receipts/${rows[0]!.idempotency_key}`,
        quarantine: "/console/quarantine",
      };
      const results: Record<string, { p50Ms: number; p95Ms: number; bytes: number }> = {};
      for (const [name, path] of Object.entries(pages)) {
        const times: number[] = [];
        let bytes = 0;
        for (let round = 0; round <= Number(flags.rounds); round += 1) {
          const started = performance.now();
          const response = await fetch(`${base}${path}`, { headers: { cookie }, redirect: "manual" });
          const body = await response.text();
          if (response.status !== 200) throw new Error(`${path}: ${response.status}`);
          bytes = body.length;
          // The first round warms the connection pool and the template cache.
          if (round > 0) times.push(performance.now() - started);
        }
        results[name] = { p50Ms: Math.round(percentile(times, 50) * 10) / 10, p95Ms: Math.round(percentile(times, 95) * 10) / 10, bytes };
      }
      const report = {
        date: new Date().toISOString(),
        machine: { cores: cpus().length, node: process.version },
        receipts,
        accounts: accounts.length,
        rounds: Number(flags.rounds),
        seedSeconds: Math.round(seedSeconds * 10) / 10,
        pages: results,
      };
      process.stdout.write(`\nconsole pages over ${receipts} receipts, ${accounts.length} accounts (${report.machine.cores} cores, Node ${process.version}; seeded in ${report.seedSeconds} s)\n`);
      for (const [name, result] of Object.entries(results)) {
        process.stdout.write(`  ${name.padEnd(22)} p50 ${String(result.p50Ms).padStart(7)} ms  p95 ${String(result.p95Ms).padStart(7)} ms  ${result.p95Ms < TARGET_MS ? "ok" : "OVER"} (< ${TARGET_MS} ms)\n`);
      }
      mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
      const file = `${report.date.replace(/[:.]/g, "-")}-console.json`;
      writeFileSync(new URL(`./results/${file}`, import.meta.url), `${JSON.stringify(report, null, 2)}\n`);
      process.stdout.write(`\nreport: bench/results/${file}\n`);
      process.exitCode = Object.values(results).every((result) => result.p95Ms < TARGET_MS) ? 0 : 1;
    } finally {
      await app.close();
    }
  } finally {
    await closeDeps(deps);
    await deleteKeysUnder(RUN, TEST_REDIS_URL);
    await admin.query(`DROP DATABASE IF EXISTS ${RUN} WITH (FORCE)`);
    await admin.end();
  }
}

await main();
