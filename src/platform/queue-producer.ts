import { createHash } from "node:crypto";
import { type JobsOptions, Queue } from "bullmq";
import { Cluster, Redis } from "ioredis";
import type { RedisClient } from "./deps.js";
import { EVENTS_PER_JOB, JOB_CHARGE_USAGE, JOB_QUARANTINE_ITEMS, USAGE_QUEUE } from "./queue.js";
import { type RejectedItem, type UsageEvent } from "../usage/usage-event.js";

// Transient faults (a database restart) are retried for about an hour before a job fails.
const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 12,
  backoff: { type: "exponential", delay: 1000, jitter: 0.5 },
  removeOnComplete: { count: 1000 },
  removeOnFail: false,
};

export function createUsageQueue(connection: RedisClient, prefix: string): Queue {
  return new Queue(USAGE_QUEUE, { connection, prefix, defaultJobOptions: DEFAULT_JOB_OPTIONS });
}

/**
 * Queues a callback's accepted events in chunks and its rejected items for quarantine, in one
 * Redis transaction. Job ids are content hashes, so the same batch sent again while its jobs
 * are still known to Redis adds nothing; PostgreSQL stays the idempotency store after that.
 *
 * A replay passes its own `runId`: the events it sends back may equal a job Redis still
 * remembers as done, and must not be taken for that job. Returns the jobs' ids: one per
 * EVENTS_PER_JOB events, in order, then the rejected items' job, so a caller can watch them.
 */
export async function enqueueCallbackItems(
  queue: Queue,
  items: { events: UsageEvent[]; rejected: RejectedItem[] },
  options: { runId?: string } = {},
): Promise<string[]> {
  const jobs = callbackJobs(items, options);
  if (jobs.length > 0) await queue.addBulk(jobs);
  return jobs.map((job) => job.opts!.jobId!);
}

/** The jobs enqueueCallbackItems adds, their ids computed from their content. */
export function callbackJobs(items: { events: UsageEvent[]; rejected: RejectedItem[] }, options: { runId?: string } = {}): Parameters<Queue["addBulk"]>[0] {
  const jobId = (kind: string, content: unknown) =>
    // BullMQ job ids may not contain ':'.
    `${kind}-${createHash("sha256").update(options.runId ?? "").update(JSON.stringify(content)).digest("hex")}`;
  const jobs: Parameters<Queue["addBulk"]>[0] = [];
  for (let start = 0; start < items.events.length; start += EVENTS_PER_JOB) {
    const events = items.events.slice(start, start + EVENTS_PER_JOB);
    jobs.push({ name: JOB_CHARGE_USAGE, data: { events }, opts: { jobId: jobId("usage", events) } });
  }
  if (items.rejected.length > 0) {
    jobs.push({
      name: JOB_QUARANTINE_ITEMS,
      data: { items: items.rejected },
      opts: { jobId: jobId("quarantine", items.rejected) },
    });
  }
  return jobs;
}

/**
 * How many workers read `queue` now. BullMQ names each worker's blocking connection after the
 * queue's prefix and name (`<prefix>:<base64 name>`), and Queue.getWorkers finds them in Redis's
 * CLIENT LIST. One Redis server lists the clients of all its databases: only those in the queue's
 * own database count, since a worker under the same prefix in another reads other keys. Undefined
 * where Redis will not list its clients (a managed Redis without CLIENT, a user without the right).
 */
export async function queueWorkerCount(queue: Queue): Promise<number | undefined> {
  const { connection } = queue.opts;
  // A cluster has database 0 alone.
  const database = connection instanceof Redis ? (connection.options.db ?? 0) : 0;
  try {
    const workers = await queue.getWorkers();
    // BullMQ's stand-in when CLIENT is an unknown command: one entry with no connection name.
    if (workers.some((worker) => worker.rawname === undefined)) return undefined;
    return workers.filter((worker) => Number(worker.db ?? 0) === database).length;
  } catch (error) {
    if (/^NOPERM/.test((error as Error).message)) return undefined;
    throw error;
  }
}

// Within the receiver's own bound on queueing a batch (5 s).
const REPLICA_ACK_TIMEOUT_MS = 2_000;
const queueSlots = new Map<string, number>();

export type Replication = {
  /** Replicas in sync with the queue's master when asked, at most the number wanted. */
  required: number;
  /** Of those, how many acknowledged every write this client had sent to the master. */
  acknowledged: number;
};

/**
 * Queues a callback's items (enqueueCallbackItems) and, when `wanted` replicas are asked for,
 * waits for them to hold the batch (awaitReplication), the master's connection taken first.
 */
export async function enqueueReplicated(
  queue: Queue,
  client: RedisClient,
  items: Parameters<typeof enqueueCallbackItems>[1],
  wanted: number,
): Promise<Replication> {
  if (wanted === 0) {
    await enqueueCallbackItems(queue, items);
    return { required: 0, acknowledged: 0 };
  }
  const prefix = queue.opts.prefix!;
  const master = await queueMaster(client, prefix);
  await enqueueCallbackItems(queue, items);
  return awaitReplication(client, prefix, master, wanted);
}

/**
 * Waits up to two seconds until `wanted` replicas hold every write sent on `master`, the queue
 * master's connection taken (queueMaster) before the batch was written (Redis WAIT), or as many
 * as the master has in sync: a master left without a replica (after a failover, until the old
 * master returns as its replica) takes batches alone rather than refuse them all, since LiteLLM
 * drops every batch it is refused.
 *
 * WAIT counts only the writes of the connection it is sent on. If the slot's master connection
 * is no longer `master` (a failover, a MOVED, a reconnect while the batch was written), the
 * batch may have gone elsewhere and WAIT here would prove nothing: that throws, and the caller
 * answers 503 (the batch's job ids make a retry add nothing).
 */
export async function awaitReplication(client: RedisClient, prefix: string, master: Redis, wanted: number): Promise<Replication> {
  if ((await queueMaster(client, prefix)) !== master) throw new Error("the queue's Redis master changed while the batch was written");
  const info = String(await master.info("replication"));
  // A node demoted since the slot map was read has no replicas of its own to count.
  if (!/^role:master\r?$/m.test(info)) throw new Error("the node holding the queue's slot is no longer a master");
  const inSync = [...info.matchAll(/^slave\d+:.*\bstate=online\b/gm)].length;
  const required = Math.min(wanted, inSync);
  if (required === 0) return { required, acknowledged: 0 };
  return { required, acknowledged: Number(await master.call("WAIT", required, REPLICA_ACK_TIMEOUT_MS)) };
}

/**
 * The connection the queue's writes go through now: the client itself on one server, on a
 * cluster the connection to the master of the queue's slot.
 */
export async function queueMaster(client: RedisClient, prefix: string): Promise<Redis> {
  if (!(client instanceof Cluster)) return client;
  let slot = queueSlots.get(prefix);
  if (slot === undefined) {
    // The cluster's own answer, not a copy of its hash function.
    slot = Number(await client.cluster("KEYSLOT", prefix));
    queueSlots.set(prefix, slot);
  }
  const owner = client.slots[slot]?.[0];
  const master = client.nodes("master").find((node) => `${node.options.host}:${node.options.port}` === owner);
  if (!master) throw new Error(`no master is known for the queue's slot ${slot}`);
  return master;
}
