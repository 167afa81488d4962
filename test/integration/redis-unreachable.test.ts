import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { useTestDatabase } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { freePort } from "../support/ports.js";
import { TestRedisServer } from "../support/redis-server.js";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.js";
import { ADMIN_TOKEN, INGEST_TOKEN } from "../support/test-env.js";
import { waitFor } from "../support/wait.js";

const database = useTestDatabase();

// Well under the default 30 s: exit 0 rather than "shutdown timed out" (exit 1) is a prompt shutdown.
const SHUTDOWN_TIMEOUT_MS = "10000";
const PINO_DEBUG = 20;

const serviceEnv = (redisUrl: string) => ({
  DATABASE_URL: database.url,
  REDIS_URL: redisUrl,
  INGEST_TOKENS: INGEST_TOKEN,
  ADMIN_TOKEN,
  PORT: "0",
  HOST: "127.0.0.1",
  // Each failed reconnect is written at debug: the test counts what the one warning stands for.
  LOG_LEVEL: "debug",
  SHUTDOWN_TIMEOUT_MS,
  QUEUE_PREFIX: database.name,
});

type LogLine = { level: number; msg: string } & Record<string, unknown>;
const logLines = (service: ServiceProcess) => service.lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as LogLine);
const outageWarnings = (service: ServiceProcess) => logLines(service).filter((line) => line.msg === "Redis at REDIS_URL does not answer; retrying");
const failedReconnects = (service: ServiceProcess) => logLines(service).filter((line) => line.msg === "redis connection failed");

/** SIGTERM, then the exit code once its output is all in. */
async function stop(service: ServiceProcess): Promise<number | null> {
  const closed = once(service.child, "close");
  service.child.kill("SIGTERM");
  await closed;
  return service.child.exitCode;
}

describe("a service whose Redis does not answer", () => {
  it("writes one warning naming REDIS_URL, its password hidden and no stack, and stops at once on SIGTERM", async () => {
    const closedPort = await freePort();
    const service = startServiceProcess("all-in-one", serviceEnv(`redis://spend:hunter2-secret@127.0.0.1:${closedPort}/0`));
    let code: number | null;
    try {
      await service.listeningAt;
      // The commands', the queue's and the worker's two connections, each retrying.
      await waitFor(() => failedReconnects(service).length >= 20);
    } finally {
      code = await stop(service);
    }
    expect(code).toBe(0);
    expect(outageWarnings(service)).toEqual([
      expect.objectContaining({ level: 40, setting: "REDIS_URL", redis: `redis://spend:***@127.0.0.1:${closedPort}/0`, error: `connect ECONNREFUSED 127.0.0.1:${closedPort}` }),
    ]);
    const aboveDebug = logLines(service).filter((line) => line.level > PINO_DEBUG);
    expect(aboveDebug.filter((line) => JSON.stringify(line).includes("ECONNREFUSED"))).toHaveLength(1);
    expect(service.lines.filter((line) => line.includes('"stack"') || line.includes("hunter2"))).toEqual([]);
    expect(logLines(service).at(-1)?.msg).toBe("shut down");
  });

  it("says once that Redis answers again, and charges what it is sent from then on", async () => {
    const redis = await TestRedisServer.start();
    await redis.kill();
    const service = startServiceProcess("all-in-one", serviceEnv(redis.url));
    let code: number | null;
    try {
      const baseUrl = await service.listeningAt;
      await waitFor(() => outageWarnings(service).length === 1);
      await redis.restart();
      await waitFor(() => logLines(service).some((line) => line.msg === "Redis at REDIS_URL answers again"));
      const posted = await fetch(`${baseUrl}/v1/callbacks/litellm`, {
        method: "POST",
        headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify([litellmPayload("after-outage-1", "team-outage")]),
      });
      expect(posted.status).toBe(202);
      const receipts = async () => (await database.pool.query("SELECT count(*)::int AS n FROM charge_receipts WHERE idempotency_key = 'after-outage-1'")).rows[0].n;
      await waitFor(async () => (await receipts()) === 1);
    } finally {
      code = await stop(service);
      await redis.remove();
    }
    expect(code).toBe(0);
    expect(outageWarnings(service)).toHaveLength(1);
  });
});
