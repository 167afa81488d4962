/**
 * The receiver process's CPU per event, end to end: the build's receiver (as `npm run
 * start:receiver` runs it) takes the batches `npm run bench` posts, over HTTP, into Redis, with no
 * worker, and its user + system time is read from /proc before and after. This is the figure the
 * bench's per-process table counts for the receiver, without the rest of the pipeline beside it.
 *
 *   npm run build && node --import tsx bench/receiver-cpu.ts [--batches 80] [--warmup 10] [--clients 2]
 *                                                            [--node-args="--cpu-prof --cpu-prof-dir=/tmp/prof"]
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import pg from "pg";
import { runMigrations } from "../src/platform/db/migrate.js";
import { deleteKeysUnder } from "../test/support/redis-keys.js";
import { ServiceProcess } from "../test/support/service-process.js";
import { ADMIN_DATABASE_URL, databaseUrlFor, TEST_REDIS_URL } from "../test/support/test-env.js";
import { batchBody } from "./litellm-batch.js";

const { values: flags } = parseArgs({
  options: {
    batches: { type: "string", default: "80" },
    warmup: { type: "string", default: "10" },
    clients: { type: "string", default: "2" },
    batch: { type: "string", default: "512" },
    // Extra node flags for the receiver, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    "node-args": { type: "string", default: "" },
  },
});
const batches = Number(flags.batches);
const warmup = Number(flags.warmup);
const clients = Number(flags.clients);
const batch = Number(flags.batch);

const INGEST_TOKEN = `bench-ingest-${randomBytes(8).toString("hex")}`;
const RUN = `spend_ingest_receiver_cpu_${randomBytes(4).toString("hex")}`;

/** User + system CPU microseconds `pid` has used (USER_HZ is 100 on Linux). */
function cpuMicroseconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

async function post(url: string, bodies: Buffer[]): Promise<void> {
  let next = 0;
  const client = async () => {
    for (let index = next++; index < bodies.length; index = next++) {
      const response = await fetch(`${url}/v1/callbacks/litellm`, {
        method: "POST",
        headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
        body: bodies[index],
      });
      await response.arrayBuffer();
      if (response.status !== 202) throw new Error(`receiver answered ${response.status}`);
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
}

const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
await admin.connect();
await admin.query(`CREATE DATABASE ${RUN}`);
const receiver = new ServiceProcess(
  "receiver",
  {
    DATABASE_URL: databaseUrlFor(RUN),
    REDIS_URL: TEST_REDIS_URL,
    INGEST_TOKENS: INGEST_TOKEN,
    ADMIN_TOKEN: `bench-admin-${randomBytes(8).toString("hex")}`,
    QUEUE_PREFIX: RUN,
    LOG_LEVEL: "warn",
    QUEUE_HIGH_WATER: "1000000",
  },
  { nodeArgs: ["--max-old-space-size=256", "--max-semi-space-size=16", ...flags["node-args"].split(" ").filter(Boolean)] },
);
try {
  await runMigrations(databaseUrlFor(RUN));
  await receiver.start();
  const bodies = Array.from({ length: warmup + batches }, (_, n) => Buffer.from(batchBody(`b${n}`, n * batch, batch, (call) => `acct-${call % 1000}`)));
  await post(receiver.url, bodies.slice(0, warmup));
  const before = cpuMicroseconds(receiver.pid!);
  const started = performance.now();
  await post(receiver.url, bodies.slice(warmup));
  const used = cpuMicroseconds(receiver.pid!) - before;
  const seconds = (performance.now() - started) / 1000;
  const events = batches * batch;
  console.log(`receiver process: ${events} events in ${batches} batches of ${bodies[0]!.length} bytes, ${clients} clients, ${seconds.toFixed(1)} s`);
  console.log(`receiver CPU: ${(used / events).toFixed(1)} core-µs per event (${(used / 1e6).toFixed(2)} s)`);
} finally {
  await receiver.kill("SIGTERM");
  await deleteKeysUnder(RUN, TEST_REDIS_URL);
  await admin.query(`DROP DATABASE IF EXISTS ${RUN} WITH (FORCE)`);
  await admin.end();
}
