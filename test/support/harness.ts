import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import pg from "pg";
import { afterAll, afterEach, beforeAll, expect, inject } from "vitest";
import { parseSettings, ROLES, type Settings } from "../../src/platform/config.js";
import { closeDeps, createDeps, createLogger, type Deps } from "../../src/platform/deps.js";
import { buildServer } from "../../src/receiver/server.js";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { waitFor, waitUntilDrained } from "./wait.js";
import { queueWorkerCount } from "../../src/platform/queue-producer.js";
import { startUsageWorker, type UsageWorker } from "../../src/worker/start.js";
import {
  adminQuery,
  ADMIN_TOKEN,
  databaseUrlFor,
  INGEST_TOKEN,
  SECOND_INGEST_TOKEN,
  TEST_REDIS_URL,
} from "./test-env.js";

const DRAIN_TIMEOUT_MS = 60_000;

export type LogLine = Record<string, unknown> & { msg?: string; event?: string };

export type Harness = {
  deps: Deps;
  app: FastifyInstance;
  /** Undefined when the harness runs the receiver alone. */
  worker: UsageWorker | undefined;
  settings: Settings;
  logs: LogLine[];
  alerts: (event: string) => LogLine[];
  postCallback: (body: unknown, headers?: Record<string, string>) => Promise<LightMyRequestResponse>;
  admin: (method: "GET" | "POST", url: string, body?: unknown) => Promise<LightMyRequestResponse>;
  /** Resolves once the queue holds no waiting, active or delayed job. */
  drainQueue: () => Promise<void>;
};

/**
 * An isolated service for one test file: its own database (copied from the migrated
 * template), its own queue prefix on the real Redis, the real HTTP server through inject,
 * and a real usage worker. After each test the books must tie out, unless `booksTieOut: false`
 * (a file that writes derived or tampered rows itself, as useTestDatabase says).
 */
/** `overrides` may be a function, for settings known only once another beforeAll has run (a cluster's ports). */
export function useServiceHarness(
  overrides: Record<string, string> | (() => Record<string, string>) = {},
  options: { worker?: boolean; booksTieOut?: boolean } = {},
): Harness {
  const withWorker = options.worker ?? true;
  const database = useTestDatabase({ booksTieOut: options.booksTieOut });
  const harness = {} as Harness;

  beforeAll(async () => {
    const settings = parseSettings(ROLES["all-in-one"], {
      DATABASE_URL: database.url,
      REDIS_URL: TEST_REDIS_URL,
      INGEST_TOKENS: `${INGEST_TOKEN},${SECOND_INGEST_TOKEN}`,
      ADMIN_TOKEN,
      PRICING_FILE: "config/pricing.yaml",
      LOG_LEVEL: "info",
      QUEUE_PREFIX: database.name,
      ...(typeof overrides === "function" ? overrides() : overrides),
    });
    const logs: LogLine[] = [];
    const capture = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split("\n")) if (line.trim()) logs.push(JSON.parse(line));
        done();
      },
    });
    const deps = createDeps(settings, { logger: createLogger(settings, capture) });
    // Without a worker, jobs stay where the receiver put them, for tests of the receiver alone.
    const worker = withWorker ? startUsageWorker(deps) : undefined;
    // Seen before the first test, by producers that ask whether a worker reads (quarantine replay).
    if (worker) await waitFor(async () => ((await queueWorkerCount(deps.usageQueue)) ?? 0) > 0);
    const app = await buildServer(deps);
    await app.ready();
    Object.assign(harness, {
      deps,
      app,
      worker,
      settings,
      logs,
      alerts: (event: string) => logs.filter((line) => line.event === event),
      postCallback: (body: unknown, headers: Record<string, string> = {}) =>
        app.inject({
          method: "POST",
          url: "/v1/callbacks/litellm",
          headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json", ...headers },
          payload: typeof body === "string" ? body : JSON.stringify(body),
        }),
      admin: (method: "GET" | "POST", url: string, body?: unknown) =>
        app.inject({
          method,
          url,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
          ...(body === undefined ? {} : { payload: body as object }),
        }),
      drainQueue: async () => {
        try {
          // A bound on a hang, not a speed check: 5,000 fuzzed bodies take about 16 s on a busy 2-core machine.
          await waitUntilDrained(deps.usageQueue, DRAIN_TIMEOUT_MS);
        } catch (error) {
          // Say which jobs are stuck and why, rather than only that the queue did not drain.
          const stuck = await deps.usageQueue.getJobs(["delayed", "waiting", "active"], 0, 5);
          const reasons = stuck.map((job) => `${job.id} (${job.attemptsMade} attempts): ${job.failedReason ?? "no reason yet"}`);
          throw new Error(`${(error as Error).message}; stuck jobs: ${reasons.join("; ") || "none listed"}`);
        }
      },
    } satisfies Harness);
  });

  // Runs before the database's own tie-out check: hooks after a test run in reverse order.
  afterEach(async () => {
    if (withWorker) await harness.drainQueue();
  });

  afterAll(async () => {
    await harness.worker?.stop();
    await harness.app?.close();
    if (harness.deps) {
      await harness.deps.usageQueue.obliterate({ force: true });
      await closeDeps(harness.deps);
    }
  });

  return harness;
}

export type TestDatabase = { name: string; url: string; pool: pg.Pool };

/**
 * A database of this test file's own, copied from the migrated template and dropped after
 * the file. After each test the books must tie out (`reconcileLedger` finds no drift), unless
 * the file tampers with them on purpose (`booksTieOut: false`).
 */
export function useTestDatabase(options: { booksTieOut?: boolean } = {}): TestDatabase {
  const name = `spend_ingest_t_${randomBytes(6).toString("hex")}`;
  const database: TestDatabase = { name, url: databaseUrlFor(name), pool: undefined as unknown as pg.Pool };

  beforeAll(async () => {
    await adminQuery(`CREATE DATABASE ${name} TEMPLATE ${inject("templateDatabase")}`);
    database.pool = new pg.Pool({ connectionString: database.url, max: 10 });
    // Dropping the database at the end terminates idle clients; that is expected, not a failure.
    database.pool.on("error", () => {});
  });

  afterEach(async () => {
    if (options.booksTieOut === false) return;
    const report = await reconcileLedger(database.pool);
    expect(report.drifts).toEqual([]);
  });

  afterAll(async () => {
    await database.pool?.end();
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });

  return database;
}
