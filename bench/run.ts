/**
 * The throughput benchmark: real receiver and worker processes (the build in dist/, as
 * `npm run start:receiver` and `start:worker` run them) against the PostgreSQL and
 * Redis of DATABASE_URL / REDIS_URL, in a throwaway database and queue prefix. Load comes from
 * concurrent HTTP clients posting LiteLLM json_array batches with prompts and responses.
 *
 *   npm run bench -- [--events 200000] [--accounts 1000] [--batch 512] [--workers 2]
 *                    [--rate 5000] [--clients 4] [--hot-events 50000] [--naive-events 5000]
 *                    [--unfunded-events 50000] [--raw-events 100000] [--cpu-prof-dir DIR]
 *                    [--redis-cluster] [--enforce off|team|key|team,key]
 *
 * Besides throughput and latency, each phase's cost per event: the CPU each process kind used
 * (from /proc), and what PostgreSQL's tables grew by per charged call. Its yardstick is the raw
 * BullMQ pipeline of the same run: one job per event, consumed by no-op workers
 * (bench/raw-worker.ts). docs/guides/performance.md says how each figure is measured.
 *
 * `--redis-cluster` also starts a Redis Cluster of its own (three masters, a replica each, as the
 * suite's test does) and runs the spread and paced phases again on it, with fresh services, so
 * that its figures stand beside the single server's of the same run. `--enforce` runs the services
 * with ENFORCE_ON_DEPLETED against a fake LiteLLM admin API.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
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
import type { UsageEvent } from "../src/usage/usage-event.js";
import { BackendCpu, processCpuMs } from "./backend-cpu.js";
import { countJobStatements } from "./statements-per-job.js";
import { bytesPerCall, type TableBytes, tableBytes } from "./table-sizes.js";

/** The node flags a package.json start script runs its service with: the deployment's own, one place. */
function startScriptNodeArgs(script: string): string {
  const scripts = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).scripts as Record<string, string>;
  return scripts[script]!.split(" ").filter((word) => word.startsWith("--")).join(" ");
}

const { values: flags } = parseArgs({
  options: {
    events: { type: "string", default: "200000" },
    accounts: { type: "string", default: "1000" },
    batch: { type: "string", default: "512" },
    workers: { type: "string", default: "2" },
    rate: { type: "string", default: "5000" },
    clients: { type: "string", default: "4" },
    "hot-events": { type: "string", default: "50000" },
    "naive-events": { type: "string", default: "5000" },
    "paced-events": { type: "string", default: "60000" },
    // Accounts without grants: every charge takes a balance further below zero and raises an alert.
    "unfunded-events": { type: "string", default: "50000" },
    // The raw BullMQ pipeline's events, one job each.
    "raw-events": { type: "string", default: "100000" },
    // Profiles every service process: DIR/receiver, DIR/worker, DIR/raw-worker (bench/profile-top.ts reads them).
    "cpu-prof-dir": { type: "string", default: "" },
    // Extra node flags for the service processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    "node-args": { type: "string", default: "" },
    // Each service's own node flags; by default those `npm run start:receiver` / `start:worker` give it.
    "receiver-node-args": { type: "string", default: startScriptNodeArgs("start:receiver") },
    "worker-node-args": { type: "string", default: startScriptNodeArgs("start:worker") },
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
  unfundedEvents: Number(flags["unfunded-events"]),
  rawEvents: Number(flags["raw-events"]),
};

const REDIS_URL = TEST_REDIS_URL;
const INGEST_TOKEN = `bench-ingest-${randomBytes(8).toString("hex")}`;
const ADMIN_TOKEN = `bench-admin-${randomBytes(8).toString("hex")}`;
const RUN = `spend_ingest_bench_${randomBytes(4).toString("hex")}`;
const databaseUrl = databaseUrlFor(RUN);
// The bench's own connections, left out of PostgreSQL's CPU: counting receipts is not the service's work.
const BENCH_APPLICATION = "spend-ingest-bench";

/** Where a set of services keeps its queue: the environment they get, and the bench's own view of it. */
type QueueSite = { env: Record<string, string>; redis: RedisTarget; prefix: string };

const SINGLE_REDIS: QueueSite = { env: { REDIS_URL }, redis: { url: REDIS_URL }, prefix: RUN };

// With --enforce: the enforcement settings, pointing at the bench's fake LiteLLM admin API.
let enforcementEnv: Record<string, string> = {};

/** The receiver or a worker, as `npm run start:receiver` / `start:worker` run them (node options and all). */
function service(entry: "receiver" | "usage-worker", site: QueueSite): ServiceProcess {
  const nodeArgs = [
    ...`${flags["node-args"] ?? ""} ${entry === "receiver" ? flags["receiver-node-args"] : flags["worker-node-args"]}`.split(" ").filter(Boolean),
    ...profileArgs(entry === "receiver" ? "receiver" : "worker"),
  ];
  return new ServiceProcess(entry, serviceEnv(site), { nodeArgs });
}

function profileArgs(kind: string): string[] {
  return flags["cpu-prof-dir"] ? ["--cpu-prof", `--cpu-prof-dir=${flags["cpu-prof-dir"]}/${kind}`] : [];
}

function serviceEnv(site: QueueSite): Record<string, string> {
  return {
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
}

type LoadResult = { startedAtMs: number; seconds: number; ackMs: number[] };

/**
 * Posts `events` in batches from concurrent clients, at `rate` events/s when given. Unpaced
 * phases build their bodies before the clock starts, so the load generator's own work does
 * not take the two cores from the service it measures; a paced phase builds each body when
 * due, so that its endTime is the moment it is offered.
 */
async function offerLoad(
  receiverUrl: string,
  prefix: string,
  events: number,
  account: (n: number) => string,
  startClock: () => Promise<void>,
  rate?: number,
): Promise<LoadResult> {
  const ackMs: number[] = [];
  const batches = Math.ceil(events / settings.batch);
  const bodyOf = (batch: number) => {
    const first = batch * settings.batch;
    return Buffer.from(batchBody(prefix, first, Math.min(settings.batch, events - first), account));
  };
  const prebuilt = rate ? undefined : Array.from({ length: batches }, (_, batch) => bodyOf(batch));
  let nextBatch = 0;
  await startClock();
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
  const stop = () => Promise.all(services.map((started) => started.kill("SIGTERM"))).then(() => undefined);
  // One that does not come up (a busy machine can take more than start's 30 s) takes the others down with it.
  await Promise.all(services.map((started) => started.start())).catch(async (error: unknown) => {
    await stop();
    throw error;
  });
  const names = ["receiver", ...workers.map((_, n) => `worker ${n + 1}`)];
  return {
    receiverUrl: receiver.url,
    pids: { receiver: [receiver.pid!], workers: workers.map((worker) => worker.pid!) },
    // The kernel's own high-water mark of each process's resident set (VmHWM).
    peakRssMb: () => Object.fromEntries(services.map((started, n) => [names[n], Math.round(peakRssMib(started.pid!))])),
    stop,
  };
}

/** `--workers` no-op BullMQ workers (bench/raw-worker.ts) on `prefix`'s usage queue, each ready to take jobs. */
async function startRawWorkers(prefix: string) {
  const children: ChildProcess[] = [];
  const stop = () =>
    Promise.all(
      children.map((child) =>
        child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((resolve) => child.once("exit", resolve).kill("SIGTERM")),
      ),
    ).then(() => undefined);
  try {
    for (let n = 0; n < settings.workers; n++) {
      const child = spawn(process.execPath, [...profileArgs("raw-worker"), "--import", "tsx", "bench/raw-worker.ts"], {
        env: { PATH: process.env.PATH, REDIS_URL, QUEUE_PREFIX: prefix },
        stdio: ["ignore", "pipe", "inherit"],
      });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (chunk: Buffer) => String(chunk).includes("ready") && resolve());
        child.once("exit", (code) => reject(new Error(`raw worker exited ${code}`)));
      });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    pids: children.map((child) => child.pid!),
    peakRssMb: () => Object.fromEntries(children.map((child, n) => [`raw worker ${n + 1}`, Math.round(peakRssMib(child.pid!))])),
    stop,
  };
}

const PROCESS_KINDS = ["receiver", "workers", "postgres", "redis", "loadGenerator", "rawWorkers"] as const;
type ProcessKind = (typeof PROCESS_KINDS)[number];
type CpuReading = Record<ProcessKind, number>;
/** The service processes whose CPU is read, by kind. */
type ServicePids = { receiver: number[]; workers: number[]; rawWorkers: number[] };

/**
 * CPU milliseconds used so far by each process kind: the services' own processes and the Redis
 * server from /proc/<pid>/stat, the bench database's PostgreSQL backends through BackendCpu, and
 * this process (the load generator) from process.cpuUsage().
 */
async function readCpu(backends: BackendCpu, redisPid: number, pids: ServicePids): Promise<CpuReading> {
  const sum = (list: number[]) => list.reduce((total, pid) => total + (processCpuMs(pid) ?? Number.NaN), 0);
  const own = process.cpuUsage();
  return {
    receiver: sum(pids.receiver),
    workers: sum(pids.workers),
    rawWorkers: sum(pids.rawWorkers),
    postgres: await backends.cpuMs(),
    redis: sum([redisPid]),
    loadGenerator: (own.user + own.system) / 1000,
  };
}

type PhaseCost = {
  events: number;
  /** CPU seconds per 10,000 events, by process kind, from the first request to the last receipt. */
  cpuSecondsPer10kEvents: Partial<CpuReading>;
  /** What PostgreSQL's tables grew by over the phase, per charged call; none for the raw pipeline. */
  postgresBytesPerCall?: ReturnType<typeof bytesPerCall>;
};

/**
 * Measures phases one after another: each phase calls `startClock` just before its first request
 * (after building its bodies), and its CPU is read then and once its last event is done; its
 * tables' sizes are read (after a VACUUM) before and after it.
 */
function phaseMeter(pool: pg.Pool, backends: BackendCpu, redisPid: number, pids: () => ServicePids) {
  let sizes: Record<string, TableBytes> | undefined;
  let firstSizes: Record<string, TableBytes> | undefined;
  let charged = 0;
  const measure = async <T>(events: number, run: (startClock: () => Promise<void>) => Promise<T>, options: { charges: boolean } = { charges: true }) => {
    const sizesBefore = options.charges ? (sizes ??= await tableBytes(pool)) : undefined;
    firstSizes ??= sizesBefore;
    let before: CpuReading | undefined;
    const result = await run(async () => {
      before = await readCpu(backends, redisPid, pids());
    });
    const after = await readCpu(backends, redisPid, pids());
    const cpuSecondsPer10kEvents: Partial<CpuReading> = {};
    for (const kind of PROCESS_KINDS) {
      const used = after[kind] - before![kind];
      // The raw workers run in the raw phase alone.
      if (kind !== "rawWorkers" || pids().rawWorkers.length > 0) cpuSecondsPer10kEvents[kind] = round((used / 1000) * (10_000 / events), 3);
    }
    const cost: PhaseCost = { events, cpuSecondsPer10kEvents };
    if (sizesBefore) {
      sizes = await tableBytes(pool);
      charged += events;
      cost.postgresBytesPerCall = roundBytes(bytesPerCall(sizesBefore, sizes, events));
    }
    return { result, cost };
  };
  /**
   * Over every charging phase together: a phase reuses the room VACUUM freed in the ones before
   * it (the dead row versions of transactions that rolled back and ran again, of rows updated),
   * so one phase's figure moves with what came before it, and the whole run's is the steadier.
   */
  const allPhases = () => roundBytes(bytesPerCall(firstSizes!, sizes!, charged));
  return { measure, allPhases };
}
type Measure = ReturnType<typeof phaseMeter>["measure"];
/** For phases whose cost is not measured (the Redis Cluster's). */
const unmeasured = async <T>(_events: number, run: (startClock: () => Promise<void>) => Promise<T>) => ({ result: await run(async () => {}), cost: undefined });

function round(value: number, digits: number): number {
  return Math.round(value * 10 ** digits) / 10 ** digits;
}

function roundBytes(perCall: ReturnType<typeof bytesPerCall>): ReturnType<typeof bytesPerCall> {
  const rounded = (bytes: TableBytes): TableBytes => ({ heap: Math.round(bytes.heap), indexes: Math.round(bytes.indexes), toast: Math.round(bytes.toast), total: Math.round(bytes.total) });
  return { all: rounded(perCall.all), byTable: Object.fromEntries(Object.entries(perCall.byTable).map(([name, bytes]) => [name, rounded(bytes)])) };
}

/** The spread phase (unpaced, over all accounts) and the paced one, each call key starting with `label`. */
async function spreadAndPaced(pool: pg.Pool, receiverUrl: string, accounts: string[], measure: Measure | typeof unmeasured, label = "") {
  process.stderr.write(`${label}spread: ${settings.events} events over ${settings.accounts} accounts\n`);
  const spreadRun = await measure(settings.events, async (startClock) => {
    const load = await offerLoad(receiverUrl, `${label}spread`, settings.events, (n) => accounts[n % accounts.length]!, startClock);
    await waitForReceipts(pool, `${label}spread`, settings.events);
    return { load, ...(await endToEnd(pool, `${label}spread`, load.startedAtMs, settings.events)) };
  });
  const { result: spread } = spreadRun;

  process.stderr.write(`${label}paced: ${settings.pacedEvents} events offered at ${settings.rate}/s\n`);
  const pacedRun = await measure(settings.pacedEvents, async (startClock) => {
    const load = await offerLoad(receiverUrl, `${label}paced`, settings.pacedEvents, (n) => accounts[n % accounts.length]!, startClock, settings.rate);
    await waitForReceipts(pool, `${label}paced`, settings.pacedEvents);
    return { load, ...(await endToEnd(pool, `${label}paced`, load.startedAtMs, settings.pacedEvents)) };
  });
  const { result: paced } = pacedRun;
  return {
    spread: {
      eventsPerSecond: spread.eventsPerSecond,
      seconds: spread.seconds,
      offerSeconds: spread.load.seconds,
      ackP50Ms: percentile(spread.load.ackMs, 50),
      ackP99Ms: percentile(spread.load.ackMs, 99),
      ...(spreadRun.cost ? { cost: spreadRun.cost } : {}),
    },
    paced: {
      offeredEventsPerSecond: settings.rate,
      eventsPerSecond: paced.eventsPerSecond,
      ackP50Ms: percentile(paced.load.ackMs, 50),
      ackP99Ms: percentile(paced.load.ackMs, 99),
      eventToLedgerP50Seconds: paced.eventToLedgerP50,
      eventToLedgerP99Seconds: paced.eventToLedgerP99,
      ...(pacedRun.cost ? { cost: pacedRun.cost } : {}),
    },
  };
}

/** The call every HTTP phase posts (10 + 20 tokens of gpt-4o, 2,250 credits), already normalised. */
function normalisedEvent(idempotencyKey: string, billingAccountId: string): UsageEvent {
  return usageEvent({
    idempotencyKey,
    billingAccountId,
    model: "gpt-4o",
    modelMapKey: "gpt-4o",
    provider: "openai",
    promptTokens: 10,
    completionTokens: 20,
    reportedCostUsd: "0.000225",
    eventTime: new Date().toISOString(),
  });
}

/** Queues one job per event as the naive and raw phases do: addBulk, 1,000 jobs a call. */
async function addOneJobPerEvent(queue: ReturnType<typeof createUsageQueue>, events: UsageEvent[], jobIdPrefix: string): Promise<void> {
  for (let first = 0; first < events.length; first += 1000) {
    await queue.addBulk(
      events.slice(first, first + 1000).map((event) => ({ name: JOB_CHARGE_USAGE, data: { events: [event] }, opts: { jobId: `${jobIdPrefix}${event.idempotencyKey}` } })),
    );
  }
}

/**
 * The raw BullMQ pipeline: the naive phase's jobs (one normalised event each) on a queue of their
 * own, consumed by no-op workers; from the first add until no job waits or runs.
 */
async function rawPipeline(redis: ReturnType<typeof createRedis>, measure: Measure, setRawPids: (pids: number[]) => void) {
  const prefix = `${RUN}-raw`;
  const queue = createUsageQueue(redis, prefix);
  const rawWorkers = await startRawWorkers(prefix);
  setRawPids(rawWorkers.pids);
  try {
    process.stderr.write(`raw: ${settings.rawEvents} single-event jobs, no-op workers\n`);
    const events = Array.from({ length: settings.rawEvents }, (_, n) => normalisedEvent(`raw-${n}`, `bench-acct-${n % settings.accounts}`));
    const { result: seconds, cost } = await measure(
      settings.rawEvents,
      async (startClock) => {
        await startClock();
        const started = performance.now();
        await addOneJobPerEvent(queue, events, "raw-");
        for (;;) {
          const counts = await queue.getJobCounts("wait", "active", "delayed", "prioritized");
          if (Object.values(counts).every((count) => count === 0)) return (performance.now() - started) / 1000;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      },
      { charges: false },
    );
    const failed = await queue.getFailedCount();
    return { eventsPerSecond: Math.round(settings.rawEvents / seconds), seconds, failedJobs: failed, cost, peakRssMb: rawWorkers.peakRssMb() };
  } finally {
    await rawWorkers.stop();
    setRawPids([]);
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}

async function main() {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${RUN}`);
  await runMigrations(databaseUrl);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4, application_name: BENCH_APPLICATION });
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

  const backends = new BackendCpu(ADMIN_DATABASE_URL, RUN, BENCH_APPLICATION);
  // Whatever fails before the phases leaves no database, queue or service behind.
  const removeAll = async () => {
    await backends.stop().catch(() => {});
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
    await redis.quit();
    await redisCluster?.remove();
    await litellm?.stop();
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${RUN} WITH (FORCE)`);
    await admin.end();
  };
  let statementsPerJob: Awaited<ReturnType<typeof countJobStatements>>;
  let redisPid: number;
  let running: Awaited<ReturnType<typeof startServices>>;
  try {
    process.stderr.write("statements per job: one 512-event job, funded and unfunded, counted\n");
    const batchOf = (prefix: string, account: (n: number) => string) => Array.from({ length: settings.batch }, (_, n) => normalisedEvent(`${prefix}-${n}`, account(n)));
    statementsPerJob = await countJobStatements(ADMIN_DATABASE_URL, `${RUN}_statements`, serviceEnv(SINGLE_REDIS), batchOf);
    redisPid = Number(/process_id:(\d+)/.exec(await redis.info("server"))?.[1]);
    await backends.start();
    running = await startServices(SINGLE_REDIS);
  } catch (error) {
    await removeAll();
    throw error;
  }
  let rawWorkerPids: number[] = [];
  const { measure, allPhases } = phaseMeter(pool, backends, redisPid, () => ({ ...running.pids, rawWorkers: rawWorkerPids }));
  const results: Record<string, unknown> = {};
  try {
    // Funded accounts, as in normal running: charges do not cross zero, so no alert lines.
    const accounts = Array.from({ length: settings.accounts }, (_, n) => `bench-acct-${n}`);
    for (const account of [...accounts, "bench-hot"]) {
      await recordGrant(pool, { billingAccountId: account, credits: 10n ** 15n, reference: `bench-${account}`, reason: "bench" });
    }

    const { spread, paced } = await spreadAndPaced(pool, running.receiverUrl, accounts, measure);

    process.stderr.write(`hot: ${settings.hotEvents} events on one account\n`);
    const { result: hot, cost: hotCost } = await measure(settings.hotEvents, async (startClock) => {
      const load = await offerLoad(running.receiverUrl, "hot", settings.hotEvents, () => "bench-hot", startClock);
      await waitForReceipts(pool, "hot", settings.hotEvents);
      return endToEnd(pool, "hot", load.startedAtMs, settings.hotEvents);
    });

    // Accounts never granted anything, as the issue's storage figure was measured: every charge
    // takes its balance further below zero and queues (and delivers) a negative-balance alert.
    process.stderr.write(`unfunded: ${settings.unfundedEvents} events over ${settings.accounts} unfunded accounts\n`);
    const { result: unfunded, cost: unfundedCost } = await measure(settings.unfundedEvents, async (startClock) => {
      const load = await offerLoad(running.receiverUrl, "unfunded", settings.unfundedEvents, (n) => `bench-unfunded-${n % settings.accounts}`, startClock);
      await waitForReceipts(pool, "unfunded", settings.unfundedEvents);
      return endToEnd(pool, "unfunded", load.startedAtMs, settings.unfundedEvents);
    });

    // The naive consumer: one job and one transaction per event, through the same workers.
    process.stderr.write(`naive: ${settings.naiveEvents} single-event jobs\n`);
    const naiveEvents = Array.from({ length: settings.naiveEvents }, (_, n) => normalisedEvent(`naive-${n}`, accounts[n % accounts.length]!));
    const { result: naive, cost: naiveCost } = await measure(settings.naiveEvents, async (startClock) => {
      await startClock();
      const naiveStarted = Date.now();
      await addOneJobPerEvent(queue, naiveEvents, "naive-");
      await waitForReceipts(pool, "naive", settings.naiveEvents);
      return endToEnd(pool, "naive", naiveStarted, settings.naiveEvents);
    });
    const failed = await queue.getFailedCount();

    const raw = await rawPipeline(redis, measure, (pids) => {
      rawWorkerPids = pids;
    });
    const peakRssMb = { ...running.peakRssMb(), ...raw.peakRssMb };
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
      onCluster = { ...(await spreadAndPaced(pool, running.receiverUrl, accounts, unmeasured, "cluster-")), peakRssMb: running.peakRssMb() };
      await running.stop();
    }

    // The books: every event charged exactly once, nothing failed, reconcile ok.
    const clusterEvents = redisCluster ? settings.events + settings.pacedEvents : 0;
    const total = settings.events + settings.pacedEvents + settings.hotEvents + settings.unfundedEvents + settings.naiveEvents + clusterEvents;
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
      rawPipelineFailedJobs: raw.failedJobs === 0,
    };

    const versions = await pool.query("SHOW server_version");
    const redisInfo = await redis.info("server");
    Object.assign(results, {
      date: new Date().toISOString(),
      settings,
      spread,
      paced,
      hot: { eventsPerSecond: hot.eventsPerSecond, seconds: hot.seconds, cost: hotCost },
      unfunded: { eventsPerSecond: unfunded.eventsPerSecond, seconds: unfunded.seconds, cost: unfundedCost },
      naive: { eventsPerSecond: naive.eventsPerSecond, seconds: naive.seconds, cost: naiveCost },
      raw: { workers: settings.workers, eventsPerSecond: raw.eventsPerSecond, seconds: raw.seconds, cost: raw.cost },
      ratioToRaw: { spread: round(spread.eventsPerSecond / raw.eventsPerSecond, 2), hot: round(hot.eventsPerSecond / raw.eventsPerSecond, 2) },
      ratioToNaive: Math.round((spread.eventsPerSecond / naive.eventsPerSecond) * 10) / 10,
      postgresBytesPerCallAllPhases: allPhases(),
      statementsPerJob,
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
    await removeAll();
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

// The issue 29 targets. Ratios to the raw pipeline, because these machines are shared.
const TARGETS = { spreadToRaw: 1.5, hotToRaw: 1.2, ackP99Ms: 100, eventToLedgerP99Seconds: 2, serviceCoreUsPerEvent: 150, peakRssMb: 300, postgresBytesPerCall: 1000 };
const PHASES = ["spread", "paced", "hot", "unfunded", "naive", "raw"] as const;
const SERVICE_KINDS = ["receiver", "workers", "postgres", "redis"] as const;

function printTable(title: string, rows: string[][]) {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  process.stdout.write(`\n${title}\n`);
  for (const row of rows) process.stdout.write(`  ${row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join("  ")}\n`);
}

function report(results: Record<string, any>) {
  const spreadCpu = results.spread.cost.cpuSecondsPer10kEvents;
  // CPU seconds per 10,000 events are core-µs per event divided by 100.
  const serviceCoreUsPerEvent = round(SERVICE_KINDS.reduce((total, kind) => total + spreadCpu[kind], 0) * 100, 1);
  const bytes = (phase: string) => results[phase].cost.postgresBytesPerCall.all.total as number;
  // The service's own processes: the raw pipeline's workers are the yardstick, not the service.
  const servicePeakRss = Object.entries(results.peakRssMb as Record<string, number>).filter(([name]) => !name.startsWith("raw"));
  const targets = {
    spreadToRaw: results.ratioToRaw.spread >= TARGETS.spreadToRaw,
    hotToRaw: results.ratioToRaw.hot >= TARGETS.hotToRaw,
    ackP99: results.paced.ackP99Ms <= TARGETS.ackP99Ms,
    eventToLedgerP99: results.paced.eventToLedgerP99Seconds <= TARGETS.eventToLedgerP99Seconds,
    serviceCpu: serviceCoreUsPerEvent <= TARGETS.serviceCoreUsPerEvent,
    peakRss: servicePeakRss.every(([, mb]) => mb <= TARGETS.peakRssMb),
    postgresBytesFunded: bytes("spread") <= TARGETS.postgresBytesPerCall,
    postgresBytesUnfunded: bytes("unfunded") <= TARGETS.postgresBytesPerCall,
  };
  results.serviceCoreUsPerEventSpread = serviceCoreUsPerEvent;
  results.targetsMet = targets;
  const mark = (met: boolean) => (met ? "met" : "MISSED");
  const steady = results.statementsPerJob;
  const statements = (kind: "funded" | "unfunded") => `${steady[kind].steady.charge.count} + ${steady[kind].steady.alertDelivery.count} delivering alerts`;
  const rows: Array<[string, string, string]> = [
    ["end to end, spread over accounts", `${results.spread.eventsPerSecond} events/s, ${results.ratioToRaw.spread}x raw`, `>= ${TARGETS.spreadToRaw}x raw ${mark(targets.spreadToRaw)}`],
    ["end to end, one hot account", `${results.hot.eventsPerSecond} events/s, ${results.ratioToRaw.hot}x raw`, `>= ${TARGETS.hotToRaw}x raw ${mark(targets.hotToRaw)}`],
    [`raw BullMQ pipeline (1 job per event, ${results.raw.workers} no-op workers)`, `${results.raw.eventsPerSecond} events/s`, ""],
    ["end to end, unfunded accounts (an alert per call)", `${results.unfunded.eventsPerSecond} events/s`, ""],
    ["naive consumer (1 job, 1 tx per event)", `${results.naive.eventsPerSecond} events/s, spread ${results.ratioToNaive}x`, ""],
    [`ack p50 / p99 per ${settings.batch}-event batch at ${settings.rate}/s`, `${results.paced.ackP50Ms.toFixed(0)} / ${results.paced.ackP99Ms.toFixed(0)} ms`, `p99 <= ${TARGETS.ackP99Ms} ms ${mark(targets.ackP99)}`],
    [`event to ledger p50 / p99 at ${settings.rate}/s`, `${results.paced.eventToLedgerP50Seconds.toFixed(2)} / ${results.paced.eventToLedgerP99Seconds.toFixed(2)} s`, `p99 <= ${TARGETS.eventToLedgerP99Seconds} s ${mark(targets.eventToLedgerP99)}`],
    ["CPU, receiver + workers + PostgreSQL + Redis, spread", `${serviceCoreUsPerEvent} core-µs per event`, `<= ${TARGETS.serviceCoreUsPerEvent} ${mark(targets.serviceCpu)}`],
    ["peak RSS", servicePeakRss.map(([name, mb]) => `${name} ${mb} MB`).join(", "), `<= ${TARGETS.peakRssMb} MB each ${mark(targets.peakRss)}`],
    ["PostgreSQL per charged call, spread (funded)", `${bytes("spread")} bytes`, `<= ${TARGETS.postgresBytesPerCall} ${mark(targets.postgresBytesFunded)}`],
    ["PostgreSQL per charged call, unfunded", `${bytes("unfunded")} bytes`, `<= ${TARGETS.postgresBytesPerCall} ${mark(targets.postgresBytesUnfunded)}`],
    [`statements per ${settings.batch}-event job, funded`, statements("funded"), ""],
    [`statements per ${settings.batch}-event job, unfunded`, statements("unfunded"), ""],
    ...clusterRows(results),
    ["books", Object.entries(results.checks).every(([, ok]) => ok === true) ? "every event charged once, reconcile ok" : JSON.stringify(results.checks), "all pass"],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  const valueWidth = Math.max(...rows.map(([, value]) => value.length));
  process.stdout.write(`\nspend-ingest bench (${results.machine.cores} cores, Node ${results.machine.node}, PostgreSQL ${results.machine.postgres}, Redis ${results.machine.redis}; ${settings.workers} workers)\n`);
  for (const [name, value, target] of rows) process.stdout.write(`  ${name.padEnd(width)}  ${value.padEnd(valueWidth)}  ${target}\n`);

  const kinds = ["receiver", "workers", "postgres", "redis", "loadGenerator", "rawWorkers"];
  printTable("CPU seconds per 10,000 events (core-µs per event / 100), first request to last receipt", [
    ["phase", "events", ...kinds, "all but load generator"],
    ...PHASES.map((phase) => {
      const cpu = results[phase].cost.cpuSecondsPer10kEvents;
      const service = [...SERVICE_KINDS, "rawWorkers"].reduce((total, kind) => total + (cpu[kind] ?? 0), 0);
      return [phase, String(results[phase].cost.events), ...kinds.map((kind) => (cpu[kind] === undefined ? "-" : cpu[kind].toFixed(2))), service.toFixed(2)];
    }),
  ]);
  for (const phase of ["spread", "unfunded"]) {
    const perCall = results[phase].cost.postgresBytesPerCall;
    printTable(`PostgreSQL bytes per charged call, ${phase} (after VACUUM; heap is the main fork, total adds the free space and visibility maps)`, [
      ["table", "heap", "indexes", "toast", "total"],
      ...Object.entries(perCall.byTable as Record<string, TableBytes>)
        .sort((a, b) => b[1].total - a[1].total)
        .map(([name, part]) => [name, String(part.heap), String(part.indexes), String(part.toast), String(part.total)]),
      ["all", String(perCall.all.heap), String(perCall.all.indexes), String(perCall.all.toast), String(perCall.all.total)],
    ]);
  }
  const overall = results.postgresBytesPerCallAllPhases.all;
  process.stdout.write(
    `\n  PostgreSQL bytes per charged call, each phase: ${PHASES.filter((phase) => phase !== "raw").map((phase) => `${phase} ${bytes(phase)}`).join(", ")}; ` +
      `all charging phases together: ${overall.total} (heap ${overall.heap}, indexes ${overall.indexes}, toast ${overall.toast})\n`,
  );

  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL(`./results/${results.date.replace(/[:.]/g, "-")}.json`, import.meta.url);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`\nreport: bench/results/${results.date.replace(/[:.]/g, "-")}.json\n`);
  const booksOk = Object.values(results.checks).every((ok) => ok === true);
  process.exitCode = booksOk ? 0 : 1;
}

await main();
