/**
 * The raw BullMQ pipeline's consumer, the bench's yardstick: a BullMQ worker on the usage queue of
 * QUEUE_PREFIX on REDIS_URL that does nothing with each job, with the usage workers' concurrency and
 * Redis connection options. It writes "ready" once it takes jobs and closes on SIGTERM.
 *   REDIS_URL=… QUEUE_PREFIX=… node --import tsx bench/raw-worker.ts
 */
import { Worker } from "bullmq";
import { createRedis } from "../src/platform/deps.js";
import { USAGE_QUEUE } from "../src/platform/queue.js";
import { WORKER_CONCURRENCY } from "../src/worker/start.js";

const connection = createRedis({ url: process.env.REDIS_URL! }, { forWorker: true });
const worker = new Worker(USAGE_QUEUE, async () => undefined, { connection, prefix: process.env.QUEUE_PREFIX!, concurrency: WORKER_CONCURRENCY });
await worker.waitUntilReady();
process.stdout.write("ready\n");
process.on("SIGTERM", () => {
  void worker.close().then(() => connection.quit()).then(() => process.exit(0));
});
