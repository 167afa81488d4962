import type { AddressInfo } from "node:net";
import { Worker } from "bullmq";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { deliverStrandedAlerts } from "../src/alerts/outbox.js";
import { InvalidSettingError, parseEnv, type Settings } from "../src/config/env.js";
import { isDatabaseUnavailable } from "../src/db/client.js";
import { runMigrations } from "../src/db/migrate.js";
import { closeDeps, createDeps, createRedis, type Deps } from "../src/deps.js";
import { buildServer, type ServerRoles } from "../src/http/server.js";
import { loadPriceBook, type PriceBook, PriceBookError } from "../src/pricing/price-book.js";
import { USAGE_QUEUE } from "../src/queue/contract.js";
import { recordWatermarkLag, runGatewayBackfill } from "../src/gateway/backfill.js";
import { createSpendLogPool, SpendLogError } from "../src/gateway/spend-log.js";
import { createUsageProcessor } from "./usage-processor.js";

const WORKER_CONCURRENCY = 8;
const STRANDED_ALERT_SWEEP_MS = 15_000;
// Older than any live worker takes between commit and delivery.
const STRANDED_ALERT_AGE_MS = 60_000;

/**
 * What stops a process before it serves, as the one line it prints. The exit code is for a
 * supervisor: 2 when the configuration must change and a restart cannot help, 1 when a restart
 * may succeed (PostgreSQL not answering yet).
 */
class StartFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
    this.name = "StartFailure";
  }
}

/** Stops the process with one line on stderr, never a stack trace: operators read it in journald or pm2 as it is. */
export function exitOnStartFailure(error: unknown): never {
  const failure =
    error instanceof StartFailure
      ? error
      : error instanceof InvalidSettingError
        ? new StartFailure(error.message, 2)
        : new StartFailure(`start failed: ${error instanceof Error ? error.message : String(error)}`, 1);
  process.stderr.write(`spend-ingest: ${failure.message.replace(/\s*\n\s*/g, " ")}\n`);
  process.exit(failure.exitCode);
}

/** Reads settings, or prints the one line that names the bad one and exits 2. */
export function settingsOrExit<T = Settings>(parse: (source: NodeJS.ProcessEnv) => T = parseEnv as never): T {
  try {
    return parse(process.env);
  } catch (error) {
    exitOnStartFailure(error);
  }
}

/**
 * A service entry point: settings, then `start`, which returns its parts in the order they
 * stop on SIGTERM. Whatever fails on the way stops the process with one line.
 */
export async function runService(start: (deps: Deps) => Promise<Stoppable[]>): Promise<void> {
  const deps = createDeps(settingsOrExit());
  try {
    stopOnSignal(deps, await start(deps));
  } catch (error) {
    exitOnStartFailure(error);
  }
}

/** Applies pending migrations; a failure becomes the StartFailure that names its cause. */
export async function migrateAtStart(databaseUrl: string): Promise<void> {
  try {
    await runMigrations(databaseUrl);
  } catch (error) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    // Authentication refused (28xxx) or no such database (3D000): DATABASE_URL is wrong.
    if (typeof code === "string" && (code.startsWith("28") || code === "3D000")) {
      throw new StartFailure(`invalid setting DATABASE_URL: ${String(message)}`, 2);
    }
    if (isDatabaseUnavailable(error)) {
      throw new StartFailure(`PostgreSQL at DATABASE_URL did not answer (${String(message)}); no migration applied`, 1);
    }
    throw new StartFailure(`migrations failed: ${String(message)}`, 1);
  }
}

export type Stoppable = { name: string; stop: () => Promise<void> };

type ListenOn = { setting: "PORT" | "METRICS_PORT"; port: number };

/**
 * The HTTP server: with `receiver`, callbacks, the account API and the queue UI; in every
 * process, health and the process's own metrics. `port` is the one it bound (PORT or METRICS_PORT 0: a free one).
 */
export async function startHttpServer(
  deps: Deps,
  roles: ServerRoles,
  listenOn: ListenOn,
): Promise<Stoppable & { app: FastifyInstance; port: number }> {
  const app = await buildServer(deps, roles);
  try {
    await app.listen({ port: listenOn.port, host: "0.0.0.0" });
  } catch (error) {
    const { setting, port } = listenOn;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new StartFailure(`${setting} ${port} is in use (EADDRINUSE); choose another ${setting}`, 2);
    if (code === "EACCES") {
      throw new StartFailure(`${setting} ${port} may not be bound by this user (EACCES); choose another ${setting} (above 1023)`, 2);
    }
    throw error;
  }
  const { port } = app.server.address() as AddressInfo;
  return { name: roles.receiver ? "receiver" : "health and metrics server", app, port, stop: () => app.close() };
}

export type UsageWorker = Stoppable & {
  /** Loads the price book again; a book that does not load leaves the current one in force. */
  reloadPriceBook: () => boolean;
};

/** `metricsPort` is only written in the start line: where this process serves health and metrics, if anywhere. */
export function startUsageWorker(deps: Deps, startLine: { metricsPort?: number } = {}): UsageWorker {
  let priceBook: PriceBook;
  try {
    priceBook = loadPriceBook(deps.settings.pricingFile);
  } catch (error) {
    throw error instanceof PriceBookError ? new InvalidSettingError("PRICING_FILE", error.message) : error;
  }
  const reloadPriceBook = () => {
    try {
      priceBook = loadPriceBook(deps.settings.pricingFile);
      deps.logger.info({ priceBookHash: priceBook.hash, models: priceBook.models.size }, "price book reloaded");
      return true;
    } catch (error) {
      deps.logger.error({ err: error, priceBookHash: priceBook.hash }, "price book reload failed; the current book stays");
      return false;
    }
  };
  const connection = createRedis(deps.settings.redis, { forWorker: true });
  const worker = new Worker(USAGE_QUEUE, createUsageProcessor(deps, () => priceBook), {
    connection,
    prefix: deps.settings.queuePrefix,
    concurrency: WORKER_CONCURRENCY,
    lockDuration: deps.settings.workerLockDurationMs,
    stalledInterval: deps.settings.workerLockDurationMs,
    // A job whose worker dies is run again; charging is idempotent, so repeated stalls (a crash
    // loop) are retried rather than failed after BullMQ's default single stall.
    maxStalledCount: 10,
  });
  worker.on("error", (error) => deps.logger.error({ err: error }, "worker error"));
  worker.on("stalled", (jobId) =>
    deps.logger.warn({ jobId }, "job stalled: its worker went silent past the lock; it runs again"),
  );
  worker.on("failed", (job, error) =>
    deps.logger.warn({ jobId: job?.id, attempt: job?.attemptsMade, err: error }, "job failed"),
  );
  const sweeper = setInterval(() => {
    deliverStrandedAlerts(deps.database.pool, deps.logger, { olderThanMs: STRANDED_ALERT_AGE_MS }).catch((error) =>
      deps.logger.warn({ err: error }, "stranded alert sweep failed"),
    );
  }, STRANDED_ALERT_SWEEP_MS);
  sweeper.unref();
  const backfill = startGatewayBackfill(deps, () => priceBook);
  deps.logger.info(
    { priceBookHash: priceBook.hash, models: priceBook.models.size, gatewayBackfill: backfill !== null, metricsPort: startLine.metricsPort },
    "usage worker started",
  );
  return {
    name: "usage worker",
    reloadPriceBook,
    stop: async () => {
      clearInterval(sweeper);
      await backfill?.stop();
      await worker.close();
      await connection.quit().catch(() => connection.disconnect());
    },
  };
}

/**
 * With LITELLM_DATABASE_URL, checks LiteLLM's spend log every GATEWAY_RECONCILE_INTERVAL and bills
 * what its callbacks lost. A failure (LiteLLM's database away) is logged and counted; billing of
 * callbacks goes on untouched, and the next run tries again.
 */
function startGatewayBackfill(deps: Deps, currentPriceBook: () => PriceBook): Stoppable | null {
  const { settings } = deps;
  if (settings.litellmDatabaseUrl === undefined) return null;
  const spendLog = createSpendLogPool(settings.litellmDatabaseUrl);
  // A run that outlasts the interval makes the next tick skip, not queue behind it.
  let running: Promise<void> | null = null;
  const tick = () => {
    running ??= runGatewayBackfill(
      { pool: deps.database.pool, spendLog, queue: deps.usageQueue, logger: deps.logger, metrics: deps.metrics },
      {
        priceBook: currentPriceBook(),
        billingAccountFrom: settings.billingAccountFrom,
        intervalMs: settings.gatewayReconcileIntervalMs,
        lagMs: settings.gatewayReconcileLagMs,
        overlapMs: settings.gatewayReconcileOverlapMs,
      },
    )
      .then(
        () => undefined,
        (error) => {
          deps.metrics.gatewayReconcileFailures.inc();
          const which = error instanceof SpendLogError ? "LiteLLM's database (LITELLM_DATABASE_URL) could not be read" : "it could not record what it found";
          deps.logger.error({ err: error }, `gateway backfill failed: ${which}; the next run tries again`);
          return recordWatermarkLag({ pool: deps.database.pool, metrics: deps.metrics }).catch(() => {});
        },
      )
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(tick, settings.gatewayReconcileIntervalMs);
  timer.unref();
  return {
    name: "gateway backfill",
    stop: async () => {
      clearInterval(timer);
      await running;
      await spendLog.end();
    },
  };
}

/** SIGHUP reloads the price book: new prices apply to jobs from then on, never to receipts. */
export function reloadOnSighup(worker: UsageWorker): void {
  process.on("SIGHUP", () => void worker.reloadPriceBook());
}

/**
 * Stops in order on SIGTERM or SIGINT: HTTP first, then workers finish the jobs in hand,
 * then queues, Redis and the pool. A shutdown that overruns its budget exits non-zero.
 */
function stopOnSignal(deps: Deps, parts: Stoppable[]): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const logger: Logger = deps.logger;
    logger.info({ signal }, "shutting down");
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs: deps.settings.shutdownTimeoutMs }, "shutdown timed out");
      process.exit(1);
    }, deps.settings.shutdownTimeoutMs);
    deadline.unref();
    try {
      for (const part of parts) await part.stop();
      await closeDeps(deps);
      logger.info("shut down");
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, "shutdown failed");
      process.exit(1);
    }
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}
