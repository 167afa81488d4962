import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Cluster } from "ioredis";
import { awaitReplication, queueMaster } from "../../src/platform/queue-producer.js";
import { startUsageWorker } from "../../src/worker/start.js";
import { useServiceHarness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { TestRedisCluster } from "../support/redis-cluster.js";
import { redisText } from "../support/redis-text.js";

// LiteLLM's example call: 10 prompt × $2.5e-6 + 20 completion × $1e-5 = 2,250 credits at 1e7 credits/USD.
const CREDITS_PER_CALL = 2_250;
// Beyond what Linux's socket buffers between a master and its replica hold (a few MB each way).
const REPLICATION_BALLAST_MB = 48;

let cluster: TestRedisCluster;

beforeAll(async () => {
  cluster = await TestRedisCluster.start();
}, 60_000);

afterAll(async () => {
  await cluster?.remove();
});

// Short job locks: a job in hand when its master dies is left active on the new master, and runs
// again once its lock has lapsed (charged once all the same).
const onCluster = () => ({ REDIS_CLUSTER_NODES: cluster.seeds.join(","), REDIS_URL: "", WORKER_LOCK_DURATION_MS: "2000" });

function calls(prefix: string, count: number, accounts = 7) {
  return Array.from({ length: count }, (_, n) => litellmPayload(`${prefix}-${n}`, `cluster-acct-${n % accounts}`));
}

async function chargedCredits(h: ReturnType<typeof useServiceHarness>, prefix: string) {
  const { rows } = await h.deps.database.pool.query<{ n: number; credits: string | null }>(
    "SELECT count(*)::int AS n, sum(charged_credits)::text AS credits FROM charge_receipts WHERE idempotency_key LIKE $1",
    [`${prefix}-%`],
  );
  return { receipts: rows[0]!.n, credits: Number(rows[0]!.credits ?? 0) };
}

describe("on a Redis Cluster (three masters, a replica each), by default", () => {
  const h = useServiceHarness(onCluster);

  it("runs the pipeline end to end, every key of the queue in one slot behind a hash tag of its own", async () => {
    expect(h.settings.queuePrefix).toBe(`{${h.settings.queuePrefix.slice(1, -1)}}`);
    expect(h.settings.queueReplicaAcks).toBe(1);
    const secret = "a prompt that must never reach the queue";
    const batch = calls("e2e", 300).map((call, n) => (n === 0 ? { ...call, messages: [{ role: "user", content: secret }] } : call));
    const response = await h.postCallback(batch);
    expect(response.statusCode).toBe(202);
    await h.drainQueue();
    expect(await chargedCredits(h, "e2e")).toEqual({ receipts: 300, credits: 300 * CREDITS_PER_CALL });

    // The same batch again: nothing more is charged.
    expect((await h.postCallback(batch)).statusCode).toBe(202);
    await h.drainQueue();
    expect(await chargedCredits(h, "e2e")).toEqual({ receipts: 300, credits: 300 * CREDITS_PER_CALL });

    const stored = await redisText(h.deps.redis, h.settings.queuePrefix);
    expect(stored).toContain("e2e-1");
    expect(stored).not.toContain(secret);
    const { master } = await cluster.ownerOf(h.settings.queuePrefix);
    const holders = await Promise.all(
      (h.deps.redis as import("ioredis").Cluster).nodes("master").map(async (node) => ({
        port: node.options.port,
        keys: (await node.keys(`${h.settings.queuePrefix}:*`)).length,
      })),
    );
    expect(holders.filter((holder) => holder.keys > 0).map((holder) => holder.port)).toEqual([master]);
  });

  it("answers 2xx only once a replica holds the batch: with the replica frozen, 503; the batch is charged once all the same", async () => {
    const { replica } = await cluster.ownerOf(h.settings.queuePrefix);
    expect(replica).toBeDefined();
    const batch = calls("unreplicated", 40);
    cluster.freeze(replica!);
    try {
      const response = await h.postCallback(batch);
      expect(response.statusCode).toBe(503);
      expect(response.headers["retry-after"]).toBe("5");
      expect(response.json().error).toMatchObject({ code: "queue_unavailable", message: "the batch reached 0 of the 1 Redis replicas required" });
    } finally {
      cluster.wake(replica!);
    }
    await cluster.waitHealthy();
    // The master kept it: charged once, and the caller's retry adds nothing.
    await h.drainQueue();
    expect(await chargedCredits(h, "unreplicated")).toEqual({ receipts: 40, credits: 40 * CREDITS_PER_CALL });
    await waitFor(async () => (await h.postCallback(batch)).statusCode === 202, 20_000);
    await h.drainQueue();
    expect(await chargedCredits(h, "unreplicated")).toEqual({ receipts: 40, credits: 40 * CREDITS_PER_CALL });
  });

  it("vouches for a batch only on the connection that wrote it, to a node that is still a master", async () => {
    const cluster = h.deps.redis as Cluster;
    const current = await queueMaster(cluster, h.settings.queuePrefix);
    // WAIT on any other connection counts none of the batch's writes: never a 2xx on its word.
    const other = cluster.nodes("master").find((node) => node !== current)!;
    await expect(awaitReplication(cluster, h.settings.queuePrefix, other, 1)).rejects.toThrow("the queue's Redis master changed while the batch was written");
    await expect(awaitReplication(cluster, h.settings.queuePrefix, current, 1)).resolves.toEqual({ required: 1, acknowledged: 1 });
  });

  it("the master of the queue's slot killed: its replica takes over, and every batch answered 2xx is charged", async () => {
    const { master, replica } = await cluster.ownerOf(h.settings.queuePrefix);
    expect((await h.postCallback(calls("before-failover", 50))).statusCode).toBe(202);
    await cluster.kill(master);
    // The caller retries on 503, as the fault suite's clients do (LiteLLM itself would not).
    const after = calls("after-failover", 50);
    await waitFor(async () => (await h.postCallback(after)).statusCode === 202, 30_000);
    expect((await cluster.ownerOf(h.settings.queuePrefix)).master).toBe(replica);
    // The new master has no replica until the old one returns: it takes batches alone, and says so.
    expect(h.logs.filter((line) => line.msg === "batch accepted with fewer Redis replicas in sync than QUEUE_REPLICA_ACKS").length).toBeGreaterThan(0);
    await h.drainQueue();
    expect(await chargedCredits(h, "before-failover")).toEqual({ receipts: 50, credits: 50 * CREDITS_PER_CALL });
    expect(await chargedCredits(h, "after-failover")).toEqual({ receipts: 50, credits: 50 * CREDITS_PER_CALL });
    await cluster.restart(master);
  });
});

describe("on a Redis Cluster with QUEUE_REPLICA_ACKS=0", () => {
  // No worker until the failover is over, so that none takes the jobs off the master before it
  // dies: the test then measures only what replication kept.
  const h = useServiceHarness(() => ({ ...onCluster(), QUEUE_REPLICA_ACKS: "0" }), { worker: false });

  it("a batch answered 2xx while the replica lagged is lost when its master fails: what the default prevents", async () => {
    const { master, replica } = await cluster.ownerOf(h.settings.queuePrefix);
    // The receiver's connection takes no command before it is ready (it answers 503 instead).
    await waitFor(() => h.deps.redis.status === "ready", 10_000);
    cluster.freeze(replica!);
    // A replica that lags, as over a congested link: a frozen process's kernel still takes in what
    // its master sends, so the master first sends more than the sockets between them can hold.
    // What follows (the batch) then waits in the master's own memory and dies with it.
    const ballast = "x".repeat(1024 * 1024);
    for (let n = 0; n < REPLICATION_BALLAST_MB; n++) await h.deps.redis.set(`${h.settings.queuePrefix}ballast-${n}`, ballast);
    const response = await h.postCallback(calls("lost", 40));
    expect(response.statusCode).toBe(202);
    await cluster.kill(master);
    cluster.wake(replica!);
    await waitFor(async () => (await cluster.ownerOf(h.settings.queuePrefix)).master === replica, 30_000);
    const worker = startUsageWorker(h.deps);
    try {
      expect((await h.postCallback(calls("kept", 40))).statusCode).toBe(202);
      await h.drainQueue();
    } finally {
      await worker.stop();
    }
    expect(await chargedCredits(h, "kept")).toEqual({ receipts: 40, credits: 40 * CREDITS_PER_CALL });
    expect(await chargedCredits(h, "lost")).toEqual({ receipts: 0, credits: 0 });
    await cluster.restart(master);
  });
});
