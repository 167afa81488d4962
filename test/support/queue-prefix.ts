import { randomBytes } from "node:crypto";
import { afterAll } from "vitest";
import { deleteKeysUnder } from "./redis-keys.js";
import { TEST_REDIS_URL } from "./test-env.js";

/**
 * A queue prefix of this test file's own, for the processes and queues it starts on the test
 * Redis. After the file every key under it is deleted, whatever wrote it: a queue, a worker, or
 * a command that only opened the queue (a Queue writes its meta key when it opens). `alsoOn`
 * names further Redis databases the file uses the prefix in.
 *
 * Called before anything that starts a process, so that its clean-up runs after theirs (hooks
 * after tests run in reverse order) and nothing writes under the prefix once it is cleared.
 */
export function useQueuePrefix(options: { alsoOn?: string[] } = {}): string {
  const prefix = `spend_ingest_q_${randomBytes(6).toString("hex")}`;
  afterAll(async () => {
    for (const redisUrl of [TEST_REDIS_URL, ...(options.alsoOn ?? [])]) await deleteKeysUnder(prefix, redisUrl);
  });
  return prefix;
}
