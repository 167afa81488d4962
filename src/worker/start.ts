import { Worker } from "bullmq";
import { deliverStrandedAlerts } from "../books/alert-outbox.js";
import { enforceCurrentPolicy } from "../books/enforcement.js";
import { recordWatermarkLag, runGatewayBackfill } from "../gateway/backfill.js";
import { createLitellmAdmin } from "../gateway/litellm-admin.js";
import { createSpendLogPool, endSpendLogPool, SpendLogError } from "../gateway/spend-log.js";
import { InvalidSettingError } from "../platform/config.js";
import { createRedis, type WorkerDeps } from "../platform/deps.js";
import type { Metrics } from "../platform/metrics.js";
import type { Stoppable } from "../platform/process.js";
import { USAGE_QUEUE } from "../platform/queue.js";
import { type CostMapIdentity, loadPriceBook, type PriceBook, PriceBookError } from "../pricing/price-book.js";
import { startCreditExpiry } from "./credit-expiry.js";
import { startEnforcementDelivery } from "./enforcement-delivery.js";
import { createUsageProcessor } from "./usage-processor.js";

const WORKER_CONCURRENCY = 8;
const STRANDED_ALERT_SWEEP_MS = 15_000;
// Older than any live worker takes between commit and delivery.
const STRANDED_ALERT_AGE_MS = 60_000;

export type UsageWorker = Stoppable & {
  /** Loads the price book again; a book that does not load leaves the current one in force. */
  reloadPriceBook: () => boolean;
};

/** `metricsPort` is only written in the start line: where this process serves health and metrics, if anywhere. */
export function startUsageWorker(deps: WorkerDeps, startLine: { metricsPort?: number } = {}): UsageWorker {
  let priceBook: PriceBook;
  try {
    priceBook = loadPriceBook(deps.settings.pricingFile);
  } catch (error) {
    throw error instanceof PriceBookError ? new InvalidSettingError([{ setting: "PRICING_FILE", detail: error.message }]) : error;
  }
  showCostMap(deps.metrics, priceBook.costMap);
  // The book and its cost map are read and checked whole before either replaces the one in force.
  const reloadPriceBook = () => {
    try {
      priceBook = loadPriceBook(deps.settings.pricingFile);
      showCostMap(deps.metrics, priceBook.costMap);
      deps.logger.info({ priceBookHash: priceBook.hash, models: priceBook.models.size, costMap: priceBook.costMap }, "price book reloaded");
      return true;
    } catch (error) {
      deps.logger.error({ err: error, priceBookHash: priceBook.hash }, "price book reload failed; the current book stays");
      return false;
    }
  };
  const connection = createRedis(deps.settings.redis, { forWorker: true });
  const chargeJob = createUsageProcessor(deps, () => priceBook);
  // The jobs being run now: a shutdown with Redis away waits for these and nothing else.
  const inHand = new Set<Promise<unknown>>();
  const runJob: typeof chargeJob = (job) => {
    const running = chargeJob(job);
    inHand.add(running);
    const forget = () => inHand.delete(running);
    running.then(forget, forget);
    return running;
  };
  const worker = new Worker(USAGE_QUEUE, runJob, {
    connection,
    prefix: deps.settings.queuePrefix,
    concurrency: WORKER_CONCURRENCY,
    lockDuration: deps.settings.workerLockDurationMs,
    stalledInterval: deps.settings.workerLockDurationMs,
    // A job whose worker dies is run again; charging is idempotent, so repeated stalls (a crash
    // loop) are retried rather than failed after BullMQ's default single stall.
    maxStalledCount: 10,
  });
  worker.on("error", deps.redisOutage.listener("worker error", "error"));
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
  const creditExpiry = startCreditExpiry(deps);
  const { litellmAdmin } = deps.settings;
  // A policy that names a kind it did not before blocks those principals of accounts already blocked.
  enforceCurrentPolicy(deps.database.pool, deps.settings.enforcement).then(
    (decided) => decided > 0 && deps.logger.info({ decided }, "enforcement: the current policy decided actions for accounts already blocked"),
    (error) => deps.logger.warn({ err: error }, "enforcement: accounts already blocked could not be checked against the current policy"),
  );
  const enforcement =
    litellmAdmin === undefined
      ? null
      : startEnforcementDelivery({ pool: deps.database.pool, admin: createLitellmAdmin(litellmAdmin), logger: deps.logger, metrics: deps.metrics });
  deps.logger.info(
    {
      priceBookHash: priceBook.hash,
      models: priceBook.models.size,
      costMap: priceBook.costMap,
      gatewayBackfill: backfill !== null,
      enforceOnDepleted: deps.settings.enforcement.blocks.join(",") || "off",
      metricsPort: startLine.metricsPort,
    },
    "usage worker started",
  );
  return {
    name: "usage worker",
    reloadPriceBook,
    stop: async () => {
      clearInterval(sweeper);
      await backfill?.stop();
      await creditExpiry.stop();
      await enforcement?.stop();
      if (connection.status === "ready") {
        await worker.close();
        await connection.quit().catch(() => connection.disconnect());
        return;
      }
      // Redis is away: BullMQ's close would wait for it, until the shutdown's deadline, to record
      // the ends of jobs. The jobs in hand finish their work in PostgreSQL, and the worker goes; a
      // job whose end Redis never learnt runs again and finds its receipts (charging is idempotent).
      await Promise.allSettled(inHand);
      await worker.close(true);
      connection.disconnect();
    },
  };
}

/**
 * With LITELLM_DATABASE_URL, checks LiteLLM's spend log every GATEWAY_RECONCILE_INTERVAL and bills
 * what its callbacks lost. A failure (LiteLLM's database away) is logged and counted; billing of
 * callbacks goes on untouched, and the next run tries again.
 */
function startGatewayBackfill(deps: WorkerDeps, currentPriceBook: () => PriceBook): Stoppable | null {
  const { settings } = deps;
  if (settings.litellmDatabaseUrl === undefined) return null;
  const spendLog = createSpendLogPool(settings.litellmDatabaseUrl);
  // A run that outlasts the interval makes the next tick skip, not queue behind it.
  let running: Promise<void> | null = null;
  let stopping = false;
  const tick = () => {
    running ??= runGatewayBackfill(
      { pool: deps.database.pool, spendLog, queue: deps.usageQueue, logger: deps.logger, metrics: deps.metrics },
      {
        priceBook: currentPriceBook(),
        billingAccountFrom: settings.billingAccountFrom,
        withPrincipals: settings.enforcement.blocks.length > 0,
        intervalMs: settings.gatewayReconcileIntervalMs,
        lagMs: settings.gatewayReconcileLagMs,
        overlapMs: settings.gatewayReconcileOverlapMs,
        spendLogRetentionMs: settings.litellmSpendLogRetentionMs,
      },
    )
      .then(
        () => undefined,
        (error) => {
          // Cut by the shutdown (endSpendLogPool): the watermark did not move, the next start reads the window again.
          if (stopping && error instanceof SpendLogError) return deps.logger.info("gateway backfill cut short by the shutdown");
          deps.metrics.gatewayReconcileFailures.inc();
          const which = error instanceof SpendLogError ? "LiteLLM's database (LITELLM_DATABASE_URL) could not be read" : "it could not record what it found";
          deps.logger.error({ err: error }, `gateway backfill failed: ${which}; the next run tries again`);
          const lagDeps = { pool: deps.database.pool, metrics: deps.metrics, logger: deps.logger };
          return recordWatermarkLag(lagDeps, settings.litellmSpendLogRetentionMs).catch(() => {});
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
      stopping = true;
      // A run waiting on LiteLLM's database is cut, not waited for: its wait may last the statement timeout.
      const ended = endSpendLogPool(spendLog);
      await running;
      await ended;
    },
  };
}

/** The cost map in force as its metrics, the previous map's series gone; none when the book names no map. */
function showCostMap(metrics: Metrics, costMap: CostMapIdentity | null): void {
  metrics.costMapInfo.reset();
  metrics.costMapEntries.reset();
  if (costMap === null) return;
  metrics.costMapInfo.set({ version: costMap.version ?? "", date: costMap.date ?? "", sha256: costMap.sha256 }, 1);
  metrics.costMapEntries.set({ sha256: costMap.sha256 }, costMap.entries);
}

/** SIGHUP reloads the price book: new prices apply to jobs from then on, never to receipts. */
export function reloadOnSighup(worker: UsageWorker): void {
  process.on("SIGHUP", () => void worker.reloadPriceBook());
}

