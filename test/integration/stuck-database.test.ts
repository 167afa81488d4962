import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSettings, ROLES } from "../../src/platform/config.js";
import { closeDeps, createDeps, createLogger } from "../../src/platform/deps.js";
import { buildServer } from "../../src/receiver/server.js";
import { createUsageQueue, enqueueCallbackItems } from "../../src/platform/queue-producer.js";
import { startUsageWorker } from "../../src/worker/start.js";
import { waitFor } from "../support/wait.js";
import { freePort } from "../support/ports.js";
import { startServiceProcess } from "../support/service-process.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { ADMIN_TOKEN, INGEST_TOKEN, TEST_REDIS_URL } from "../support/test-env.js";
import { usageEvent } from "../support/usage-events.js";

/** A server that takes PostgreSQL's connections and never says a word: a database stuck, not down. */
let silent: Server;
let silentUrl: string;
const sockets: Socket[] = [];
const prefix = useQueuePrefix();

beforeAll(async () => {
  silent = createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => {});
  });
  silent.listen(0, "127.0.0.1");
  await once(silent, "listening");
  const address = silent.address();
  silentUrl = `postgres://postgres@127.0.0.1:${typeof address === "object" && address ? address.port : 0}/stuck`;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  silent.close();
});

const settingsFor = (overrides: Record<string, string>) =>
  parseSettings(ROLES["all-in-one"], {
    DATABASE_URL: silentUrl,
    REDIS_URL: TEST_REDIS_URL,
    INGEST_TOKENS: INGEST_TOKEN,
    ADMIN_TOKEN,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: "silent",
    ...overrides,
  });

describe("a PostgreSQL that accepts connections and never answers", () => {
  it("the account API answers 503 with Retry-After within seconds, not never", async () => {
    const deps = createDeps(settingsFor({}), { logger: createLogger({ logLevel: "silent" }) });
    const app = await buildServer(deps);
    try {
      const started = Date.now();
      const answer = await app.inject({
        method: "GET",
        url: "/v1/accounts/acct-stuck/credits/summary",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(answer.statusCode).toBe(503);
      expect(answer.headers["retry-after"]).toBe("5");
      expect(answer.json()).toMatchObject({ error: { code: "database_unavailable" } });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await app.close();
      await closeDeps(deps);
    }
  });

  it("a worker's job fails and is retried later instead of staying active", async () => {
    const deps = createDeps(settingsFor({}), { logger: createLogger({ logLevel: "silent" }) });
    const worker = startUsageWorker(deps);
    try {
      await enqueueCallbackItems(deps.usageQueue, { events: [usageEvent({ idempotencyKey: "stuck-job-1" })], rejected: [] });
      const [job] = await deps.usageQueue.getJobs(["waiting", "active", "delayed"]);
      await waitFor(async () => (await deps.usageQueue.getJob(job!.id!))!.attemptsMade >= 1, 15_000);
      expect(await (await deps.usageQueue.getJob(job!.id!))!.getState()).toBe("delayed");
      await deps.usageQueue.obliterate({ force: true });
    } finally {
      await worker.stop();
      await closeDeps(deps);
    }
  }, 30_000);

  it("a worker process stops on SIGTERM with exit 0 within SHUTDOWN_TIMEOUT_MS, a job in hand", async () => {
    const worker = startServiceProcess("usage-worker", {
      DATABASE_URL: silentUrl,
      REDIS_URL: TEST_REDIS_URL,
      INGEST_TOKENS: INGEST_TOKEN,
      ADMIN_TOKEN,
      METRICS_PORT: "0",
      QUEUE_PREFIX: prefix,
      SHUTDOWN_TIMEOUT_MS: "20000",
    });
    await worker.listeningAt;
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const queue = createUsageQueue(redis, prefix);
    try {
      await enqueueCallbackItems(queue, { events: [usageEvent({ idempotencyKey: "stuck-job-2" })], rejected: [] });
      await waitFor(async () => (await queue.getActiveCount()) > 0, 10_000);
      const started = Date.now();
      const exited = once(worker.child, "exit");
      worker.child.kill("SIGTERM");
      const [code] = await exited;
      expect(code).toBe(0);
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      if (worker.child.exitCode === null) worker.child.kill("SIGKILL");
      await queue.obliterate({ force: true });
      await queue.close();
      await redis.quit();
    }
  }, 45_000);
});

describe("/metrics with Redis away", () => {
  it("serves the process's own metrics and marks the queue gauges stale", async () => {
    const deadRedis = `redis://127.0.0.1:${await freePort()}/0`;
    const deps = createDeps(settingsFor({ REDIS_URL: deadRedis }), { logger: createLogger({ logLevel: "silent" }) });
    const app = await buildServer(deps, "health-and-metrics");
    try {
      const scrape = await app.inject({ method: "GET", url: "/metrics" });
      expect(scrape.statusCode).toBe(200);
      expect(scrape.body).toMatch(/^spend_ingest_queue_jobs_stale 1$/m);
      expect(scrape.body).toMatch(/^spend_ingest_process_cpu_seconds_total /m);
      expect(scrape.body).not.toMatch(/^spend_ingest_queue_jobs\{/m);
    } finally {
      await app.close();
      deps.redis.disconnect();
      await deps.usageQueue.close().catch(() => {});
      await deps.database.pool.end();
    }
  });
});
