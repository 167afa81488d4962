import { afterAll, beforeAll } from "vitest";
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
