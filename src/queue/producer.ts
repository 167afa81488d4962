import { createHash } from "node:crypto";
import { type JobsOptions, Queue } from "bullmq";
import type { Redis } from "ioredis";
import {
  EVENTS_PER_JOB,
  JOB_CHARGE_USAGE,
  JOB_QUARANTINE_ITEMS,
  type RejectedItem,
  USAGE_QUEUE,
  type UsageEvent,
} from "./contract.js";

// Transient faults (a database restart) are retried for about an hour before a job fails.
const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 12,
  backoff: { type: "exponential", delay: 1000, jitter: 0.5 },
  removeOnComplete: { count: 1000 },
  removeOnFail: false,
};

export function createUsageQueue(connection: Redis, prefix: string): Queue {
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
  if (jobs.length > 0) await queue.addBulk(jobs);
  return jobs.map((job) => job.opts!.jobId!);
}
