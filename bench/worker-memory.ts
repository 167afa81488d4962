/**
 * Worker processes alone, under node flags to compare: their peak resident set and their CPU per
 * event, in alternating rounds. No receiver and no load generator share the cores with them, so
 * a flag's cost shows in the workers' own CPU time (read from /proc), which neighbours move far
 * less than wall time.
 *
 *   node --import tsx bench/worker-memory.ts [--jobs 150] [--accounts 1000] [--workers 2] [--rounds 3]
 *        [--variant "uncapped=" --variant "capped=--max-old-space-size=160 --max-semi-space-size=8"]
 *
 * Each round starts fresh workers (the build in dist/) for each variant in turn, queues `jobs`
 * jobs of 512 normalised events (as the receiver queues a full batch), and waits for their
 * receipts. A worker's CPU and its time in garbage collection are counted from its healthy start
 * to the last receipt; the collections' time and the memory come from bench/memory-probe.mjs,
 * which every worker here loads.
 */
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import { recordGrant } from "../src/books/grants.js";
import { reconcileLedger } from "../src/books/reconcile-ledger.js";
import { createRedis } from "../src/platform/deps.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { EVENTS_PER_JOB, JOB_CHARGE_USAGE } from "../src/platform/queue.js";
import { createUsageQueue } from "../src/platform/queue-producer.js";
import { peakRssMib, ServiceProcess } from "../test/support/service-process.js";
import { deleteKeysUnder } from "../test/support/redis-keys.js";
import { ADMIN_DATABASE_URL, databaseUrlFor, TEST_REDIS_URL } from "../test/support/test-env.js";
import { usageEvent } from "../test/support/usage-events.js";
import { backendCpuMs } from "./backend-cpu.js";

const { values: flags } = parseArgs({
  options: {
    jobs: { type: "string", default: "150" },
    accounts: { type: "string", default: "1000" },
    workers: { type: "string", default: "2" },
    rounds: { type: "string", default: "3" },
    variant: { type: "string", multiple: true, default: ["uncapped=", "capped=--max-old-space-size=160 --max-semi-space-size=8"] },
  },
});
const jobs = Number(flags.jobs);
const accountCount = Number(flags.accounts);
const workerCount = Number(flags.workers);
const rounds = Number(flags.rounds);
const variants = flags.variant!.map((text) => {
  const at = text.indexOf("=");
  return { label: text.slice(0, at), nodeArgs: text.slice(at + 1).split(" ").filter(Boolean) };
});

const RUN = `spend_ingest_workermem_${randomBytes(4).toString("hex")}`;
const databaseUrl = databaseUrlFor(RUN);
const TICK_MS = 10; // USER_HZ is 100 on Linux

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

const accounts = Array.from({ length: accountCount }, (_, n) => `wm-acct-${n}`);

/** A normalised call as the receiver queues it for the bench's payload: gpt-4o, 10 + 20 tokens, key and team. */
function eventsFor(label: string, job: number) {
  return Array.from({ length: EVENTS_PER_JOB }, (_, n) => {
    const serial = job * EVENTS_PER_JOB + n;
    const account = accounts[serial % accounts.length]!;
    return usageEvent({
      idempotencyKey: `${label}/${serial}`,
      billingAccountId: account,
      model: "gpt-4o",
      modelGroup: "gpt-4o",
      modelMapKey: "gpt-4o",
      provider: "openai",
      callType: "acompletion",
      promptTokens: 10,
      completionTokens: 20,
      reportedCostUsd: "0.000225",
      eventTime: new Date().toISOString(),
      keyHash: randomBytes(32).toString("hex"),
      teamId: account,
    });
  });
}

type Measured = {
  label: string;
  round: number;
  seconds: number;
  workerCpuUsPerEvent: number;
  /** Time in garbage collection, as bench/memory-probe.mjs counts it (wall time of each pause). */
  gcUsPerEvent: number;
  postgresCpuUsPerEvent: number;
  peakRssMb: number[];
};

/** Milliseconds the workers probed into `directory` have spent collecting garbage, as last written. */
function gcMsIn(directory: string): number {
  return readdirSync(directory)
    .filter((file) => file.endsWith(".json"))
    .map((file) => JSON.parse(readFileSync(join(directory, file), "utf8")).gc as Record<string, { ms: number }>)
    .reduce((total, kinds) => total + Object.values(kinds).reduce((sum, kind) => sum + kind.ms, 0), 0);
}

/** Starts a worker, up to three times: a machine busy with other work can keep it from answering in time. */
async function startWorker(env: Record<string, string>, nodeArgs: string[]): Promise<ServiceProcess> {
  for (let attempt = 1; ; attempt++) {
    const worker = new ServiceProcess("usage-worker", env, { nodeArgs });
    try {
      return await worker.start();
    } catch (error) {
      await worker.kill();
      if (attempt === 3) throw error;
    }
  }
}

async function main() {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${RUN}`);
  await runMigrations(databaseUrl);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  pool.on("error", () => {});
  const redis = createRedis({ url: TEST_REDIS_URL }, { forWorker: true });
  const queue = createUsageQueue(redis, RUN);
  const measured: Measured[] = [];
  try {
    for (const account of accounts) {
      await recordGrant(pool, { billingAccountId: account, credits: 10n ** 15n, reference: `wm-${account}`, reason: "bench" });
    }
    for (let round = 1; round <= rounds; round++) {
      // Alternating which variant goes first, so neither always meets the tables a round older.
      const order = round % 2 === 1 ? variants : [...variants].reverse();
      for (const variant of order) {
        const label = `r${round}-${variant.label}`;
        const env = { DATABASE_URL: databaseUrl, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: RUN, LOG_LEVEL: "warn", ADMIN_TOKEN: "wm-admin-token-0001" };
        const probeDir = mkdtempSync(join(tmpdir(), "worker-memory-"));
        const nodeArgs = [`--import=./bench/memory-probe.mjs?dir=${probeDir}`, ...variant.nodeArgs];
        const workers = await Promise.all(Array.from({ length: workerCount }, () => startWorker(env, nodeArgs)));
        try {
          // The probe writes every 2 s: what start-up collected is read once it has written, and left out.
          await new Promise((resolve) => setTimeout(resolve, 2_100));
          const gcBefore = gcMsIn(probeDir);
          const cpuBefore = workers.map((worker) => cpuMs(worker.pid!));
          const postgresBefore = await backendCpuMs(ADMIN_DATABASE_URL, RUN);
          const started = Date.now();
          for (let first = 0; first < jobs; first += 50) {
            const batch = Array.from({ length: Math.min(50, jobs - first) }, (_, n) => first + n);
            await queue.addBulk(batch.map((job) => ({ name: JOB_CHARGE_USAGE, data: { events: eventsFor(label, job) }, opts: { jobId: `${label}-${job}` } })));
          }
          const events = jobs * EVENTS_PER_JOB;
          for (;;) {
            const { rows } = await pool.query("SELECT count(*)::int AS n FROM charge_receipts WHERE idempotency_key LIKE $1", [`${label}/%`]);
            if (rows[0].n >= events) break;
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
          const seconds = (Date.now() - started) / 1000;
          const workerCpu = workers.reduce((total, worker, n) => total + cpuMs(worker.pid!) - cpuBefore[n]!, 0);
          const postgresCpu = (await backendCpuMs(ADMIN_DATABASE_URL, RUN)) - postgresBefore;
          await new Promise((resolve) => setTimeout(resolve, 2_100));
          const gcMs = gcMsIn(probeDir) - gcBefore;
          const result: Measured = {
            label: variant.label,
            round,
            seconds,
            workerCpuUsPerEvent: Math.round((workerCpu * 1000) / events),
            gcUsPerEvent: Math.round((gcMs * 1000) / events),
            postgresCpuUsPerEvent: Math.round((postgresCpu * 1000) / events),
            peakRssMb: workers.map((worker) => Math.round(peakRssMib(worker.pid!))),
          };
          measured.push(result);
          process.stderr.write(`${JSON.stringify(result)}\n`);
        } finally {
          await Promise.all(workers.map((worker) => worker.kill("SIGTERM")));
        }
      }
    }
    const reconcile = await reconcileLedger(pool);
    if (!reconcile.ok) throw new Error("reconcile failed");
  } finally {
    await queue.close();
    await redis.quit();
    await deleteKeysUnder(RUN, TEST_REDIS_URL);
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${RUN} WITH (FORCE)`);
    await admin.end();
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  process.stdout.write(`\n${workerCount} workers, ${jobs} jobs of ${EVENTS_PER_JOB} events a round, ${rounds} rounds\n`);
  for (const variant of variants) {
    const runs = measured.filter((result) => result.label === variant.label);
    process.stdout.write(
      `${variant.label.padEnd(12)} [${variant.nodeArgs.join(" ")}]\n` +
        `  worker CPU µs/event ${runs.map((run) => run.workerCpuUsPerEvent).join(", ")} (median ${median(runs.map((run) => run.workerCpuUsPerEvent))})\n` +
        `  GC pauses µs/event ${runs.map((run) => run.gcUsPerEvent).join(", ")} (median ${median(runs.map((run) => run.gcUsPerEvent))})\n` +
        `  PostgreSQL CPU µs/event ${runs.map((run) => run.postgresCpuUsPerEvent).join(", ")}\n` +
        `  events/s ${runs.map((run) => Math.round((jobs * EVENTS_PER_JOB) / run.seconds)).join(", ")}\n` +
        `  peak RSS MB ${runs.map((run) => run.peakRssMb.join("/")).join(", ")} (max ${Math.max(...runs.flatMap((run) => run.peakRssMb))})\n`,
    );
  }
}

await main();
