import type pg from "pg";
import { afterAll, beforeAll } from "vitest";
import type { createRedis } from "../../src/platform/deps.js";
import type { createUsageQueue } from "../../src/platform/queue-producer.js";
import type { ServiceProcess } from "../support/service-process.js";
import { TestRedisServer } from "../support/redis-server.js";
import { OwnedPostgres } from "./owned-postgres.js";

/**
 * A fault file's own PostgreSQL and Redis (append-only, so a killed Redis comes back with what it
 * acknowledged), started before its tests and removed after them. Read them inside tests only.
 */
export function useOwnedServices(): { readonly postgres: OwnedPostgres; readonly redis: TestRedisServer } {
  let postgres: OwnedPostgres | undefined;
  let redis: TestRedisServer | undefined;

  beforeAll(async () => {
    [postgres, redis] = await Promise.all([OwnedPostgres.start(), TestRedisServer.start({ appendOnly: true })]);
  }, 120_000);

  afterAll(async () => {
    try {
      postgres?.stop("immediate");
      postgres?.remove();
    } finally {
      await redis?.remove();
    }
  });

  return {
    get postgres() {
      return postgres!;
    },
    get redis() {
      return redis!;
    },
  };
}

/** What a scenario started, stopped and cleared after it: its processes, its queue's keys, its connections. */
export async function endScenario(started: {
  services: ServiceProcess[];
  queue: ReturnType<typeof createUsageQueue>;
  queueRedis: ReturnType<typeof createRedis>;
  pool: pg.Pool;
}): Promise<void> {
  await Promise.all(started.services.map((service) => service.kill("SIGTERM")));
  await started.queue.obliterate({ force: true }).catch(() => {});
  await started.queue.close();
  await started.queueRedis.quit();
  await started.pool.end();
}
