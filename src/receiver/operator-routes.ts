import type { FastifyInstance } from "fastify";
import type { ServiceSettings } from "../platform/config.js";
import type { Deps } from "../platform/deps.js";

const READY_CHECK_TIMEOUT_MS = 2_000;

/** Liveness, readiness and metrics for orchestrators and Prometheus; no auth, no secrets. */
export async function operatorRoutes(app: FastifyInstance, deps: Deps<ServiceSettings>): Promise<void> {
  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/metrics", async (_request, reply) => {
    const { registry } = deps.metrics;
    return reply.type(registry.contentType).send(await registry.metrics());
  });

  app.get("/readyz", async (_request, reply) => {
    const [postgres, redis] = await Promise.all([
      answers(deps.database.pool.query("SELECT 1")),
      answers(deps.redis.ping()),
    ]);
    const ready = postgres && redis;
    return reply.code(ready ? 200 : 503).send({
      status: ready ? "ready" : "unavailable",
      checks: { postgres: postgres ? "ok" : "down", redis: redis ? "ok" : "down" },
    });
  });
}

async function answers(check: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), READY_CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([check.then(() => true as const), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
