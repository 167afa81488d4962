import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import pg from "pg";
import { expect, it } from "vitest";
import { recordGrant } from "../../src/books/grants.js";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { createRedis } from "../../src/platform/deps.js";
import { runMigrations } from "../../src/platform/db/migrate.js";
import { createUsageQueue } from "../../src/platform/queue-producer.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { ServiceProcess } from "../support/service-process.js";
import { expectRollupsEqualReceipts } from "../support/usage-rollups.js";
import { waitFor, waitUntilDrained } from "../support/wait.js";
import { endScenario, useOwnedServices } from "./owned-services.js";

const CALLS = 12_000;
const ACCOUNTS = 50;
const BATCH = 512;
const TOKEN = `fault-ingest-${randomBytes(6).toString("hex")}`;
const ADMIN = `fault-admin-${randomBytes(6).toString("hex")}`;
const HOUR_MS = 3600 * 1000;

const owned = useOwnedServices();

const sleep = (milliseconds: number) => new Promise((resolve) => setTimeout(resolve, milliseconds));

/** The n-th call: its account (the team that pays), one of three keys, one of two models, ended within the last 3 days. */
function callBody(n: number, now: number): string {
  const account = `acct-${n % ACCOUNTS}`;
  return JSON.stringify(
    litellmPayload(`rollup-${n}`, account, {
      model: n % 3 === 0 ? "gpt-4o-mini" : "gpt-4o",
      prompt_tokens: 1 + (n % 300),
      completion_tokens: 1 + (n % 200),
      endTime: (now - ((n * 7919) % (72 * HOUR_MS))) / 1000,
      metadata: { user_api_key_hash: createHash("sha256").update(`key-${n % 3}`).digest("hex") },
    }),
  );
}

/** `ops usage rebuild` as an operator runs it, killed with SIGKILL after `killAfterMs` when given. */
function opsUsageRebuild(env: Record<string, string>, killAfterMs?: number): Promise<number | string | null> {
  const child = spawn(process.execPath, ["dist/bin/ops.js", "usage", "rebuild", "--json"], { env: { PATH: process.env.PATH, ...env }, stdio: "ignore" });
  if (killAfterMs !== undefined) setTimeout(() => child.kill("SIGKILL"), killAfterMs);
  return new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal)));
}

it("usage_hourly equals the receipts after workers are killed with SIGKILL among charges and rollup runs, and a rebuild is killed mid-run, while calls arrive", async () => {
  const name = `usage_rollup_${randomBytes(3).toString("hex")}`;
  const databaseUrl = await owned.postgres.createDatabase(name);
  await runMigrations(databaseUrl);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  pool.on("error", () => {});
  for (let n = 0; n < ACCOUNTS; n++) {
    await recordGrant(pool, { billingAccountId: `acct-${n}`, credits: 10n ** 9n, reference: `grant-${n}`, reason: null });
  }
  const env = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: owned.redis.url,
    INGEST_TOKENS: TOKEN,
    ADMIN_TOKEN: ADMIN,
    QUEUE_PREFIX: name,
    LOG_LEVEL: "warn",
    // Short job locks: a killed worker's jobs go to the others within seconds; a rollup run every
    // second, on whichever worker takes it, so that the kills land among them.
    WORKER_LOCK_DURATION_MS: "2000",
    USAGE_ROLLUP_INTERVAL: "1s",
  };
  const lines: string[] = [];
  const receiver = new ServiceProcess("receiver", env, { lines });
  const workers = Array.from({ length: 3 }, () => new ServiceProcess("usage-worker", env, { lines }));
  const queueRedis = createRedis({ url: owned.redis.url }, { forWorker: true });
  queueRedis.on("error", () => {});
  const queue = createUsageQueue(queueRedis, name);
  queue.on("error", () => {});
  try {
    await Promise.all([receiver, ...workers].map((service) => service.start()));
    const now = Date.now();
    const bodies = Array.from({ length: CALLS }, (_, n) => callBody(n, now));
    // Every tenth call is delivered twice: usage counts it once.
    const batches: string[][] = [];
    for (let start = 0; start < CALLS; start += BATCH) batches.push(bodies.slice(start, start + BATCH));
    batches.push(bodies.filter((_, n) => n % 10 === 0).slice(0, BATCH));
    const receipts = async () => (await pool.query("SELECT count(*)::int AS n FROM charge_receipts")).rows[0].n as number;

    let posting = true;
    const load = (async () => {
      for (const batch of batches) {
        for (;;) {
          const answer = await fetch(`${receiver.url}/v1/callbacks/litellm`, {
            method: "POST",
            headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
            body: `[${batch.join(",")}]`,
          }).catch(() => undefined);
          if (answer?.status === 202) break;
          await sleep(250);
        }
        await sleep(400);
      }
      posting = false;
    })();

    // Workers killed with SIGKILL among their charge transactions and rollup runs, and rebuilds
    // among them: one killed mid-run, one let finish.
    let kills = 0;
    const rebuilds: Array<number | string | null> = [];
    const faults = (async () => {
      for (let round = 0; round < 6 || posting || (await receipts()) < CALLS; round++) {
        await sleep(1000);
        const victim = workers[round % workers.length]!;
        await victim.kill("SIGKILL");
        kills += 1;
        await victim.start();
        if (round === 2) rebuilds.push(await opsUsageRebuild(env, 150));
        if (round === 4) rebuilds.push(await opsUsageRebuild(env));
        if (round > 60) throw new Error(`${await receipts()} receipts after ${round} kills`);
      }
    })();
    await Promise.all([load, faults]);
    await waitFor(async () => (await receipts()) === CALLS, 120_000);
    await waitUntilDrained(queue, 60_000);
    // The workers' rollup takes in the last receipts (the watermark waits for transactions still open anywhere on the server).
    const unrolled = async () =>
      (await pool.query("SELECT count(*)::int AS n FROM charge_receipts r, usage_rollup_watermark w WHERE r.xact >= w.xact")).rows[0].n as number;
    await waitFor(async () => (await unrolled()) === 0, 60_000);
    // Each worker says how far usage trails the charges: a run a second keeps it within seconds.
    const lag = async (worker: ServiceProcess) => {
      const text = await (await fetch(`${worker.url}/metrics`)).text();
      return Number(/^spend_ingest_usage_rollup_lag_seconds (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
    };
    for (const worker of workers) await waitFor(async () => (await lag(worker)) < 10, 30_000);

    console.log(`usage rollup faults: ${JSON.stringify({ kills, rebuildExits: rebuilds })}`);
    expect(kills).toBeGreaterThanOrEqual(6);
    // The first rebuild was killed (or, on a fast machine, had finished), the second finished.
    expect(rebuilds).toHaveLength(2);
    expect(rebuilds[1]).toBe(0);
    await expectRollupsEqualReceipts(pool);
    const { rows } = await pool.query("SELECT sum(calls)::int AS calls, count(DISTINCT key_hash)::int AS keys, count(DISTINCT model)::int AS models FROM usage_hourly");
    expect(rows[0]).toEqual({ calls: CALLS, keys: 3, models: 2 });
    expect(await reconcileLedger(pool)).toMatchObject({ ok: true });
    expect(await queue.getJobCounts("active", "failed")).toEqual({ active: 0, failed: 0 });
  } finally {
    await endScenario({ services: [receiver, ...workers], queue, queueRedis, pool });
  }
}, 600_000);
