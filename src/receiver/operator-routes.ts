import type { FastifyInstance } from "fastify";
import type { ServiceSettings } from "../platform/config.js";
import type { Deps } from "../platform/deps.js";
import { withTimeout } from "../platform/with-timeout.js";

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
      succeedsInTime(deps.database.pool.query("SELECT 1")),
      succeedsInTime(deps.redis.ping()),
    ]);
    const ready = postgres && redis;
    return reply.code(ready ? 200 : 503).send({
      status: ready ? "ready" : "unavailable",
      checks: { postgres: postgres ? "ok" : "down", redis: redis ? "ok" : "down" },
    });
  });
}

function succeedsInTime(check: Promise<unknown>): Promise<boolean> {
  return withTimeout(check, READY_CHECK_TIMEOUT_MS).then(
    () => true,
    () => false,
  );
}
