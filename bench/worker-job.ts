/**
 * The worker's own CPU per event: the usage processor (src/worker/usage-processor.ts, what the
 * worker runs for each job) on charge-usage jobs of 512 events built as the receiver builds them
 * (the benches' LiteLLM batches, normalised, then through JSON as BullMQ stores a job's data),
 * spread over unfunded accounts as `npm run bench`'s spread phase is. No queue: a job's data is
 * handed to the processor as the worker would get it, so the figure is pricing, the books'
 * statements as this process builds and reads them, alerts and metrics. It prints this process's
 * CPU time per event and PostgreSQL's backends' beside it (moving work into SQL is no gain), the
 * median over the rounds (and this process's least, the round neighbours disturbed least); on a shared machine compare commits by these, alternating runs.
 *
 *   node --import tsx bench/worker-job.ts [--rounds 5] [--jobs 40] [--size 512] [--accounts 1000] [--concurrency 2]
 *                                         [--profile /tmp/worker.cpuprofile]   (then bench/profile-top.ts)
 * --profile samples the measured rounds only, not the building of their jobs' data.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { parseArgs } from "node:util";
import type { Job } from "bullmq";
import pg from "pg";
import pino from "pino";
import { ENFORCEMENT_OFF } from "../src/books/enforcement.js";
import { parseCallbackBody } from "../src/litellm/callback-body.js";
import { normaliseCallbackItem } from "../src/litellm/normalise.js";
import { DEFAULT_BILLING_ACCOUNT_FROM } from "../src/platform/config.js";
import type { WorkerDeps } from "../src/platform/deps.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { createMetrics } from "../src/platform/metrics.js";
import { JOB_CHARGE_USAGE } from "../src/platform/queue.js";
import { loadPriceBook } from "../src/pricing/price-book.js";
import { createUsageProcessor } from "../src/worker/usage-processor.js";
import { ADMIN_DATABASE_URL, databaseUrlFor } from "../test/support/test-env.js";
import { backendCpuMs } from "./backend-cpu.js";
import { batchBody } from "./litellm-batch.js";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    jobs: { type: "string", default: "40" },
    size: { type: "string", default: "512" },
    accounts: { type: "string", default: "1000" },
    concurrency: { type: "string", default: "2" },
    profile: { type: "string" },
  },
});
const [rounds, jobs, size, accountCount, concurrency] = [flags.rounds, flags.jobs, flags.size, flags.accounts, flags.concurrency].map(Number) as [
  number,
  number,
  number,
  number,
  number,
];
const name = `spend_ingest_wj_${randomBytes(4).toString("hex")}`;

/** A job's data as the worker reads it from Redis: the receiver's events, through JSON. */
function jobData(round: number, job: number): string {
  const body = batchBody(`wj${round}-${job}`, job * size, size, (call) => `acct-${call % accountCount}`);
  const parsed = parseCallbackBody(body, { maxItems: size });
  if (!parsed.ok) throw new Error(parsed.message);
  const events = parsed.items.map((item) => {
    const normalised = normaliseCallbackItem(item, { billingAccountFrom: DEFAULT_BILLING_ACCOUNT_FROM });
    if (!normalised.ok) throw new Error(`the bench's item is refused: ${JSON.stringify(normalised.rejected.issues)}`);
    return normalised.event;
  });
  return JSON.stringify({ events });
}

async function onServer(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

await onServer(`CREATE DATABASE ${name}`);
const pool = new pg.Pool({ connectionString: databaseUrlFor(name), max: concurrency + 1, idleTimeoutMillis: 0 });
try {
  await runMigrations(databaseUrlFor(name));
  const priceBook = loadPriceBook("config/pricing.yaml");
  const deps = {
    database: { pool },
    metrics: createMetrics([]),
    logger: pino({ level: "silent" }),
    settings: { lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF },
  } as unknown as WorkerDeps;
  const processJob = createUsageProcessor(deps, () => priceBook);

  // Built before any round: the receiver's work is not the worker's.
  const dataByRound = Array.from({ length: rounds + 1 }, (_, index) => Array.from({ length: jobs }, (_, job) => jobData(index, job)));

  async function round(index: number): Promise<{ ownCpuMs: number; backendCpuMs: number; charged: number }> {
    const data = dataByRound[index]!;
    const [backendBefore, ownBefore] = [await backendCpuMs(ADMIN_DATABASE_URL, name), process.cpuUsage()];
    let next = 0;
    let charged = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let job = next++; job < jobs; job = next++) {
          // BullMQ parses a job's data from the text Redis holds: part of the worker's cost.
          const summary = (await processJob({ id: `${index}-${job}`, name: JOB_CHARGE_USAGE, data: JSON.parse(data[job]!), attemptsMade: 0 } as Job)) as {
            charged: number;
          };
          charged += summary.charged;
        }
      }),
    );
    const own = process.cpuUsage(ownBefore);
    return { ownCpuMs: (own.user + own.system) / 1000, backendCpuMs: (await backendCpuMs(ADMIN_DATABASE_URL, name)) - backendBefore, charged };
  }

  await round(0); // warm-up, not counted
  const profiler = flags.profile === undefined ? undefined : new Session();
  profiler?.connect();
  await profiler?.post("Profiler.enable");
  await profiler?.post("Profiler.start");
  const measured = [];
  for (let r = 1; r <= rounds; r++) measured.push(await round(r));
  if (profiler !== undefined) writeFileSync(flags.profile!, JSON.stringify((await profiler.post("Profiler.stop")).profile));
  const events = jobs * size;
  if (measured.some((m) => m.charged !== events)) throw new Error(`not every event was charged: ${measured.map((m) => m.charged).join(", ")}`);
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  console.log(
    JSON.stringify({
      events,
      workerCpuUsPerEvent: Number(((median(measured.map((m) => m.ownCpuMs)) * 1000) / events).toFixed(1)),
      // The least disturbed round: neighbours on a shared machine only ever add to CPU time.
      workerCpuUsPerEventMin: Number(((Math.min(...measured.map((m) => m.ownCpuMs)) * 1000) / events).toFixed(1)),
      backendCpuUsPerEvent: Number(((median(measured.map((m) => m.backendCpuMs)) * 1000) / events).toFixed(1)),
      workerRounds: measured.map((m) => Number(((m.ownCpuMs * 1000) / events).toFixed(1))),
    }),
  );
} finally {
  await pool.end();
  await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}
