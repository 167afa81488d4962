import { Redis } from "ioredis";

/** Deletes every key under `prefix` (a queue prefix) on the Redis at `redisUrl`: the tests' and the bench's clean-up. */
export async function deleteKeysUnder(prefix: string, redisUrl: string): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  try {
    // SCAN rather than KEYS: other test files use this Redis at the same time.
    for await (const keys of redis.scanStream({ match: `${prefix}:*`, count: 1_000 })) {
      if ((keys as string[]).length > 0) await redis.unlink(...(keys as string[]));
    }
  } finally {
    await redis.quit();
  }
}
