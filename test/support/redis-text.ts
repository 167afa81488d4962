import { Cluster, type Redis } from "ioredis";
import type { RedisClient } from "../../src/platform/deps.js";

/** Every value stored under a key prefix, as one text, to prove what Redis does not hold; on a cluster, on every master. */
export async function redisText(client: RedisClient, prefix: string): Promise<string> {
  const nodes = client instanceof Cluster ? client.nodes("master") : [client];
  return (await Promise.all(nodes.map((node) => nodeText(node, prefix)))).join("\n");
}

async function nodeText(redis: Redis, prefix: string): Promise<string> {
  const parts: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      if (type === "string") parts.push(String(await redis.get(key)));
      else if (type === "hash") parts.push(JSON.stringify(await redis.hgetall(key)));
      else if (type === "list") parts.push(JSON.stringify(await redis.lrange(key, "0", "-1")));
      else if (type === "set") parts.push(JSON.stringify(await redis.smembers(key)));
      else if (type === "zset") parts.push(JSON.stringify(await redis.zrange(key, "0", "-1")));
      else if (type === "stream") parts.push(JSON.stringify(await redis.xrange(key, "-", "+")));
    }
  } while (cursor !== "0");
  return parts.join("\n");
}
