/**
 * The throughput benchmark: real receiver and worker processes (the build in dist/, as
 * `npm run start:receiver` and `start:worker` run them) against the PostgreSQL and
 * Redis of DATABASE_URL / REDIS_URL, in a throwaway database and queue prefix. Load comes from
 * concurrent HTTP clients posting LiteLLM json_array batches with prompts and responses.
 *
 *   npm run bench -- [--events 200000] [--accounts 1000] [--batch 512] [--workers 2]
 *                    [--rate 5000] [--clients 4] [--hot-events 50000] [--naive-events 20000]
 *                    [--redis-cluster] [--enforce off|team|key|team,key]
 *
 * `--redis-cluster` also starts a Redis Cluster of its own (three masters, a replica each, as the
 * suite's test does) and runs the spread and paced phases again on it, with fresh services, so
 * that its figures stand beside the single server's of the same run. `--enforce` runs the services
 * with ENFORCE_ON_DEPLETED against a fake LiteLLM admin API.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { parseArgs } from "node:util";
import pg from "pg";
import type { RedisTarget } from "../src/platform/config.js";
import { createRedis } from "../src/platform/deps.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { recordGrant } from "../src/books/grants.js";
import { reconcileLedger } from "../src/books/reconcile-ledger.js";
import { JOB_CHARGE_USAGE } from "../src/platform/queue.js";
import { createUsageQueue } from "../src/platform/queue-producer.js";
import { FakeLitellmAdmin } from "../test/support/fake-litellm-admin.js";
import { TestRedisCluster } from "../test/support/redis-cluster.js";
import { peakRssMib, ServiceProcess } from "../test/support/service-process.js";
import { ADMIN_DATABASE_URL, databaseUrlFor, TEST_REDIS_URL } from "../test/support/test-env.js";
import { usageEvent } from "../test/support/usage-events.js";
import { batchBody } from "./litellm-batch.js";

const { values: flags } = parseArgs({
  options: {
    events: { type: "string", default: "200000" },
    accounts: { type: "string", default: "1000" },
    batch: { type: "string", default: "512" },
    workers: { type: "string", default: "2" },
    rate: { type: "string", default: "5000" },
    clients: { type: "string", default: "4" },
    "hot-events": { type: "string", default: "50000" },
    "naive-events": { type: "string", default: "20000" },
    "paced-events": { type: "string", default: "60000" },
    // Extra node flags for the service processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    "node-args": { type: "string", default: "" },
    // As `npm run start:receiver` runs it: the receiver's old space capped at 256 MB.
    "receiver-node-args": { type: "string", default: "--max-old-space-size=256 --max-semi-space-size=16" },
    "redis-cluster": { type: "boolean", default: false },
    // ENFORCE_ON_DEPLETED for the services (off, team, key, team,key), against a fake LiteLLM admin API.
    enforce: { type: "string", default: "off" },
  },
});
const settings = {
  enforce: flags.enforce,
  events: Number(flags.events),
  accounts: Number(flags.accounts),
  batch: Number(flags.batch),
  workers: Number(flags.workers),
  rate: Number(flags.rate),
  clients: Number(flags.clients),
  hotEvents: Number(flags["hot-events"]),
  naiveEvents: Number(flags["naive-events"]),
  pacedEvents: Number(flags["paced-events"]),
};

const REDIS_URL = TEST_REDIS_URL;
const INGEST_TOKEN = `bench-ingest-${randomBytes(8).toString("hex")}`;
const ADMIN_TOKEN = `bench-admin-${randomBytes(8).toString("hex")}`;
const RUN = `spend_ingest_bench_${randomBytes(4).toString("hex")}`;
const databaseUrl = databaseUrlFor(RUN);

/** Where a set of services keeps its queue: the environment they get, and the bench's own view of it. */
type QueueSite = { env: Record<string, string>; redis: RedisTarget; prefix: string };

const SINGLE_REDIS: QueueSite = { env: { REDIS_URL }, redis: { url: REDIS_URL }, prefix: RUN };

// With --enforce: the enforcement settings, pointing at the bench's fake LiteLLM admin API.
let enforcementEnv: Record<string, string> = {};

/** The receiver or a worker, as `npm run start:receiver` / `start:worker` run them (node options and all). */
function service(entry: "receiver" | "usage-worker", site: QueueSite): ServiceProcess {
  const nodeArgs = `${flags["node-args"] ?? ""} ${entry === "receiver" ? (flags["receiver-node-args"] ?? "") : ""}`.split(" ").filter(Boolean);
  const env = {
    DATABASE_URL: databaseUrl,
    ...site.env,
    INGEST_TOKENS: INGEST_TOKEN,
    ADMIN_TOKEN,
    QUEUE_PREFIX: RUN,
    LOG_LEVEL: "warn",
    // The bench offers more than the default backlog guard in its fastest phase.
    QUEUE_HIGH_WATER: "1000000",
    ...enforcementEnv,
  };
  return new ServiceProcess(entry, env, { nodeArgs });
}

type LoadResult = { startedAtMs: number; seconds: number; ackMs: number[] };

/**
 * Posts `events` in batches from concurrent clients, at `rate` events/s when given. Unpaced
 * phases build their bodies before the clock starts, so the load generator's own work does
 * not take the two cores from the service it measures; a paced phase builds each body when
 * due, so that its endTime is the moment it is offered.
 */
async function offerLoad(receiverUrl: string, prefix: string, events: number, account: (n: number) => string, rate?: number): Promise<LoadResult> {
  const ackMs: number[] = [];
  const batches = Math.ceil(events / settings.batch);
  const bodyOf = (batch: number) => {
    const first = batch * settings.batch;
    return Buffer.from(batchBody(prefix, first, Math.min(settings.batch, events - first), account));
  };
  const prebuilt = rate ? undefined : Array.from({ length: batches }, (_, batch) => bodyOf(batch));
  let nextBatch = 0;
  const startedAtMs = Date.now();
  const started = performance.now();
  const client = async () => {
    for (;;) {
      const batch = nextBatch++;
      if (batch >= batches) return;
      if (rate) {
        const due = started + ((batch * settings.batch) / rate) * 1000;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
      const body = prebuilt?.[batch] ?? bodyOf(batch);
      for (;;) {
        const sent = performance.now();
        const response = await fetch(`${receiverUrl}/v1/callbacks/litellm`, {
          method: "POST",
          headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
          body,
        });
        await response.arrayBuffer();
        ackMs.push(performance.now() - sent);
        if (response.status === 202) break;
        if (response.status !== 503) throw new Error(`receiver answered ${response.status}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  };
  await Promise.all(Array.from({ length: rate ? Math.max(settings.clients, 8) : settings.clients }, client));
  return { startedAtMs, seconds: (performance.now() - started) / 1000, ackMs };
}

// Far beyond any healthy phase: a run that never completes fails instead of hanging.
const RECEIPTS_DEADLINE_MS = 180_000;

async function waitForReceipts(pool: pg.Pool, prefix: string, expected: number): Promise<void> {
  const deadline = Date.now() + RECEIPTS_DEADLINE_MS;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`${prefix}: fewer than ${expected} receipts after ${RECEIPTS_DEADLINE_MS / 1000} s`);
    const { rows } = await pool.query("SELECT count(*)::int AS n FROM charge_receipts WHERE idempotency_key LIKE $1", [`${prefix}-%`]);
    if (rows[0].n >= expected) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * First post to the last receipt, and each call's end to its receipt, by the receipts'
 * created_at: the start of the transaction that wrote them, a few milliseconds before commit.
 */
async function endToEnd(pool: pg.Pool, prefix: string, startedAtMs: number, events: number) {
  const { rows } = await pool.query(
    `SELECT extract(epoch FROM max(created_at)) * 1000 AS last_ms,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - event_time)) AS p50,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - event_time)) AS p99
     FROM charge_receipts WHERE idempotency_key LIKE $1`,
    [`${prefix}-%`],
  );
  const seconds = (Number(rows[0].last_ms) - startedAtMs) / 1000;
  return { eventsPerSecond: Math.round(events / seconds), seconds, eventToLedgerP50: Number(rows[0].p50), eventToLedgerP99: Number(rows[0].p99) };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** A receiver and the workers on one queue site. */
async function startServices(site: QueueSite) {
  const receiver = service("receiver", site);
  const workers = Array.from({ length: settings.workers }, () => service("usage-worker", site));
  const services = [receiver, ...workers];
  await Promise.all(services.map((started) => started.start()));
  const names = ["receiver", ...workers.map((_, n) => `worker ${n + 1}`)];
  return {
    receiverUrl: receiver.url,
    // The kernel's own high-water mark of each process's resident set (VmHWM).
    peakRssMb: () => Object.fromEntries(services.map((started, n) => [names[n], Math.round(peakRssMib(started.pid!))])),
    stop: () => Promise.all(services.map((started) => started.kill("SIGTERM"))).then(() => undefined),
  };
}

/** The spread phase (unpaced, over all accounts) and the paced one, each call key starting with `label`. */
async function spreadAndPaced(pool: pg.Pool, receiverUrl: string, accounts: string[], label = "") {
  process.stderr.write(`${label}spread: ${settings.events} events over ${settings.accounts} accounts\n`);
  const spreadLoad = await offerLoad(receiverUrl, `${label}spread`, settings.events, (n) => accounts[n % accounts.length]!);
  await waitForReceipts(pool, `${label}spread`, settings.events);
  const spread = await endToEnd(pool, `${label}spread`, spreadLoad.startedAtMs, settings.events);

  process.stderr.write(`${label}paced: ${settings.pacedEvents} events offered at ${settings.rate}/s\n`);
  const pacedLoad = await offerLoad(receiverUrl, `${label}paced`, settings.pacedEvents, (n) => accounts[n % accounts.length]!, settings.rate);
  await waitForReceipts(pool, `${label}paced`, settings.pacedEvents);
  const paced = await endToEnd(pool, `${label}paced`, pacedLoad.startedAtMs, settings.pacedEvents);
  return {
    spread: { eventsPerSecond: spread.eventsPerSecond, seconds: spread.seconds, offerSeconds: spreadLoad.seconds, ackP50Ms: percentile(spreadLoad.ackMs, 50), ackP99Ms: percentile(spreadLoad.ackMs, 99) },
    paced: {
      offeredEventsPerSecond: settings.rate,
      eventsPerSecond: paced.eventsPerSecond,
      ackP50Ms: percentile(pacedLoad.ackMs, 50),
      ackP99Ms: percentile(pacedLoad.ackMs, 99),
      eventToLedgerP50Seconds: paced.eventToLedgerP50,
      eventToLedgerP99Seconds: paced.eventToLedgerP99,
    },
  };
}

async function main() {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${RUN}`);
  await runMigrations(databaseUrl);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  // Dropping the throwaway database at the end ends idle connections; that is not a failure.
  pool.on("error", () => {});
  const redis = createRedis(SINGLE_REDIS.redis, { forWorker: true });
  const queue = createUsageQueue(redis, RUN);
  const redisCluster = flags["redis-cluster"] ? await TestRedisCluster.start() : undefined;
  // A fake of LiteLLM's admin API (nothing here runs LiteLLM): funded accounts never call it, so
  // what --enforce measures is recording who paid, and the state read, on every charge.
  const litellm = flags.enforce === "off" ? undefined : new FakeLitellmAdmin(`sk-bench-${randomBytes(8).toString("hex")}`);
  if (litellm) {
    await litellm.start();
    enforcementEnv = { ENFORCE_ON_DEPLETED: flags.enforce!, LITELLM_ADMIN_URL: litellm.url, LITELLM_MASTER_KEY: litellm.masterKey };
  }

  let running = await startServices(SINGLE_REDIS);
  const results: Record<string, unknown> = {};
  try {
    // Funded accounts, as in normal running: charges do not cross zero, so no alert lines.
    const accounts = Array.from({ length: settings.accounts }, (_, n) => `bench-acct-${n}`);
    for (const account of [...accounts, "bench-hot"]) {
      await recordGrant(pool, { billingAccountId: account, credits: 10n ** 15n, reference: `bench-${account}`, reason: "bench" });
    }

    const { spread, paced } = await spreadAndPaced(pool, running.receiverUrl, accounts);

    process.stderr.write(`hot: ${settings.hotEvents} events on one account\n`);
    const hotLoad = await offerLoad(running.receiverUrl, "hot", settings.hotEvents, () => "bench-hot");
    await waitForReceipts(pool, "hot", settings.hotEvents);
    const hot = await endToEnd(pool, "hot", hotLoad.startedAtMs, settings.hotEvents);

    // The naive consumer: one job and one transaction per event, through the same workers.
    process.stderr.write(`naive: ${settings.naiveEvents} single-event jobs\n`);
    // The same call as the HTTP phases (10 + 20 tokens of gpt-4o, 2,250 credits), already normalised.
    const naiveEvents = Array.from({ length: settings.naiveEvents }, (_, n) =>
      usageEvent({
        idempotencyKey: `naive-${n}`,
        billingAccountId: accounts[n % accounts.length]!,
        model: "gpt-4o",
        modelMapKey: "gpt-4o",
        provider: "openai",
        promptTokens: 10,
        completionTokens: 20,
        reportedCostUsd: "0.000225",
        eventTime: new Date().toISOString(),
      }),
    );
    const naiveStarted = Date.now();
    for (let first = 0; first < naiveEvents.length; first += 1000) {
      await queue.addBulk(
        naiveEvents.slice(first, first + 1000).map((event) => ({ name: JOB_CHARGE_USAGE, data: { events: [event] }, opts: { jobId: `naive-${event.idempotencyKey}` } })),
      );
    }
    await waitForReceipts(pool, "naive", settings.naiveEvents);
    const naive = await endToEnd(pool, "naive", naiveStarted, settings.naiveEvents);
    const failed = await queue.getFailedCount();
    const peakRssMb = running.peakRssMb();
    await running.stop();

    // The same two phases on the cluster, with fresh services: only where the queue lives differs.
    let onCluster: Record<string, unknown> | undefined;
    if (redisCluster) {
      const site: QueueSite = {
        env: { REDIS_CLUSTER_NODES: redisCluster.seeds.join(",") },
        redis: { clusterNodes: redisCluster.clusterNodes },
        prefix: `{${RUN}}`,
      };
      running = await startServices(site);
      onCluster = { ...(await spreadAndPaced(pool, running.receiverUrl, accounts, "cluster-")), peakRssMb: running.peakRssMb() };
      await running.stop();
    }

    // The books: every event charged exactly once, nothing failed, reconcile ok.
    const clusterEvents = redisCluster ? settings.events + settings.pacedEvents : 0;
    const total = settings.events + settings.pacedEvents + settings.hotEvents + settings.naiveEvents + clusterEvents;
    const { rows } = await pool.query(
      `SELECT (SELECT count(*)::int FROM charge_receipts) AS receipts,
              (SELECT count(*)::int FROM ledger_entries WHERE kind = 'charge') AS entries,
              (SELECT coalesce(sum(charged_credits), 0)::text FROM charge_receipts) AS credits`,
    );
    const reconcile = await reconcileLedger(pool);
    const checks = {
      receipts: rows[0].receipts === total,
      ledgerEntries: rows[0].entries === total,
      creditsPerEvent: rows[0].credits === String(BigInt(total) * 2250n) ? true : rows[0].credits,
      reconcile: reconcile.ok,
      failedJobs: failed === 0,
    };

    const versions = await pool.query("SHOW server_version");
    const redisInfo = await redis.info("server");
    Object.assign(results, {
      date: new Date().toISOString(),
      settings,
      spread,
      paced,
      hot: { eventsPerSecond: hot.eventsPerSecond, seconds: hot.seconds },
      naive: { eventsPerSecond: naive.eventsPerSecond, seconds: naive.seconds },
      ratioToNaive: Math.round((spread.eventsPerSecond / naive.eventsPerSecond) * 10) / 10,
      peakRssMb,
      ...(onCluster ? { redisCluster: { masters: 3, replicasPerMaster: 1, queueReplicaAcks: 1, ...onCluster } } : {}),
      checks,
      machine: {
        cores: cpus().length,
        memoryGb: Math.round(totalmem() / 1073741824),
        node: process.version,
        postgres: versions.rows[0].server_version,
        redis: /redis_version:(\S+)/.exec(redisInfo)?.[1],
      },
    });
  } finally {
    await running.stop();
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
    await redis.quit();
    await redisCluster?.remove();
    await litellm?.stop();
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${RUN} WITH (FORCE)`);
    await admin.end();
  }
  report(results);
}

/** The cluster's figures, each under the single server's of the same run. */
function clusterRows(results: Record<string, any>): Array<[string, string, string]> {
  const cluster = results.redisCluster;
  if (!cluster) return [];
  return [
    ["on Redis Cluster (3 masters + 3 replicas, WAIT 1): spread", `${cluster.spread.eventsPerSecond} events/s`, `single server ${results.spread.eventsPerSecond}`],
    [`on Redis Cluster: ack p50 / p99 at ${settings.rate}/s`, `${cluster.paced.ackP50Ms.toFixed(0)} / ${cluster.paced.ackP99Ms.toFixed(0)} ms`, `single server ${results.paced.ackP50Ms.toFixed(0)} / ${results.paced.ackP99Ms.toFixed(0)} ms`],
    [`on Redis Cluster: event to ledger p50 / p99`, `${cluster.paced.eventToLedgerP50Seconds.toFixed(2)} / ${cluster.paced.eventToLedgerP99Seconds.toFixed(2)} s`, `single server ${results.paced.eventToLedgerP50Seconds.toFixed(2)} / ${results.paced.eventToLedgerP99Seconds.toFixed(2)} s`],
  ];
}

function report(results: Record<string, any>) {
  const targets = {
    spread: results.spread.eventsPerSecond >= 10_000,
    hot: results.hot.eventsPerSecond >= 5_000,
    ratioToNaive: results.ratioToNaive >= 5,
    ackP99: results.paced.ackP99Ms <= 100,
    eventToLedgerP99: results.paced.eventToLedgerP99Seconds <= 2,
    peakRss: Object.values(results.peakRssMb as Record<string, number>).every((mb) => mb <= 300),
  };
  results.targetsMet = targets;
  const mark = (met: boolean) => (met ? "met" : "MISSED");
  const rows: Array<[string, string, string]> = [
    ["end to end, spread over accounts", `${results.spread.eventsPerSecond} events/s`, `>= 10,000 ${mark(targets.spread)}`],
    ["end to end, one hot account", `${results.hot.eventsPerSecond} events/s`, `>= 5,000 ${mark(targets.hot)}`],
    ["naive consumer (1 job, 1 tx per event)", `${results.naive.eventsPerSecond} events/s`, ""],
    ["ratio to naive", `${results.ratioToNaive}x`, `>= 5x ${mark(targets.ratioToNaive)}`],
    [`ack p50 / p99 per ${settings.batch}-event batch at ${settings.rate}/s`, `${results.paced.ackP50Ms.toFixed(0)} / ${results.paced.ackP99Ms.toFixed(0)} ms`, `p99 <= 100 ms ${mark(targets.ackP99)}`],
    [`event to ledger p50 / p99 at ${settings.rate}/s`, `${results.paced.eventToLedgerP50Seconds.toFixed(2)} / ${results.paced.eventToLedgerP99Seconds.toFixed(2)} s`, `p99 <= 2 s ${mark(targets.eventToLedgerP99)}`],
    ["peak RSS", Object.entries(results.peakRssMb).map(([name, mb]) => `${name} ${mb} MB`).join(", "), `<= 300 MB each ${mark(targets.peakRss)}`],
    ...clusterRows(results),
    ["books", Object.entries(results.checks).every(([, ok]) => ok === true) ? "every event charged once, reconcile ok" : JSON.stringify(results.checks), "all pass"],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  const valueWidth = Math.max(...rows.map(([, value]) => value.length));
  process.stdout.write(`\nspend-ingest bench (${results.machine.cores} cores, Node ${results.machine.node}, PostgreSQL ${results.machine.postgres}, Redis ${results.machine.redis}; ${settings.workers} workers)\n`);
  for (const [name, value, target] of rows) process.stdout.write(`  ${name.padEnd(width)}  ${value.padEnd(valueWidth)}  ${target}\n`);
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL(`./results/${results.date.replace(/[:.]/g, "-")}.json`, import.meta.url);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\nreport: bench/results/${results.date.replace(/[:.]/g, "-")}.json\n`);
  const booksOk = Object.values(results.checks).every((ok) => ok === true);
  process.exitCode = booksOk ? 0 : 1;
}

await main();
