import { afterAll, describe, expect, it } from "vitest";
import { closeDeps, createDeps, createLogger } from "../../src/platform/deps.js";
import { buildServer } from "../../src/receiver/server.js";
import { useServiceHarness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { TestRedisServer } from "../support/redis-server.js";
import { INGEST_TOKEN } from "../support/test-env.js";

// The receiver alone: no worker, so queued jobs stay waiting where the receiver put them.
const h = useServiceHarness({ MAX_BODY_BYTES: String(1024 * 1024), QUEUE_HIGH_WATER: "2" }, { worker: false });

describe("receiver limits", () => {
  it("answers 413 past MAX_BODY_BYTES, in the error shape", async () => {
    const body = JSON.stringify([litellmPayload("big", "t", { messages: [{ role: "user", content: "x".repeat(1024 * 1024) }] })]);
    const response = await h.postCallback(body);
    expect(response.statusCode).toBe(413);
    expect(response.json()).toEqual({ error: { code: "body_too_large", message: expect.any(String) } });
  });

  it("answers 415 for a content type LiteLLM never sends", async () => {
    for (const contentType of ["text/plain", "application/xml", "multipart/form-data; boundary=x"]) {
      const response = await h.postCallback("[]", { "content-type": contentType });
      expect(response.statusCode).toBe(415);
      expect(response.json().error.code).toBe("unsupported_media_type");
    }
  });

  it("answers 503 with Retry-After while the waiting backlog is over QUEUE_HIGH_WATER", async () => {
    const statuses: number[] = [];
    for (let n = 0; n < 4; n++) statuses.push((await h.postCallback([litellmPayload(`backlog-${n}`, "t")])).statusCode);
    expect(statuses).toEqual([202, 202, 202, 503]);
    const refused = await h.postCallback([litellmPayload("backlog-4", "t")]);
    expect(refused.headers["retry-after"]).toBe("5");
    expect(refused.json().error.code).toBe("queue_unavailable");
    expect(await h.deps.usageQueue.getWaitingCount()).toBe(3);
    await h.deps.usageQueue.obliterate({ force: true });
  });
});

describe("receiver while Redis is down", () => {
  const redis = TestRedisServer.start();
  afterAll(async () => (await redis).remove());

  it("answers 503 with Retry-After while Redis does not answer, and 202 again once it is back", async () => {
    const server = await redis;
    const settings = { ...h.settings, redis: { url: server.url } };
    const deps = createDeps(settings, { logger: createLogger({ logLevel: "silent" }) });
    const app = await buildServer(deps);
    const post = (id: string) =>
      app.inject({
        method: "POST",
        url: "/v1/callbacks/litellm",
        headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
        payload: JSON.stringify([litellmPayload(id, "t")]),
      });
    try {
      expect((await post("redis-up")).statusCode).toBe(202);
      await server.kill();
      const started = Date.now();
      const down = await post("redis-down");
      expect(down.statusCode).toBe(503);
      expect(down.headers["retry-after"]).toBe("5");
      expect(Date.now() - started).toBeLessThan(6000);
      const ready = await app.inject({ method: "GET", url: "/readyz" });
      expect(ready.statusCode).toBe(503);
      expect(ready.json().checks.redis).toBe("down");

      await server.restart();
      await waitFor(async () => (await post("redis-back")).statusCode === 202, 20_000);
      expect(await deps.usageQueue.getWaitingCount()).toBeGreaterThanOrEqual(1);
    } finally {
      await app.close();
      await closeDeps(deps);
    }
  });
});
