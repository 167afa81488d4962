import { Worker } from "bullmq";
import { enforceCurrentPolicy } from "../books/enforcement.js";
import { createLitellmAdmin } from "../litellm/admin-api.js";
import { InvalidSettingError } from "../platform/config.js";
import { createRedis, type WorkerDeps } from "../platform/deps.js";
import type { Metrics } from "../platform/metrics.js";
import { type Stoppable, stopInOrder } from "../platform/process.js";
import { USAGE_QUEUE } from "../platform/queue.js";
import { type CostMapIdentity, loadPriceBook, type PriceBook, PriceBookError } from "../pricing/price-book.js";
import { startAlertPrune } from "./alert-prune.js";
import { startStrandedAlertSweep } from "./alert-sweep.js";
import { startCreditExpiry } from "./credit-expiry.js";
import { startUsageRollup } from "./usage-rollup.js";
import { startEnforcementDelivery } from "./enforcement-delivery.js";
import { startGatewayBackfill } from "./gateway-backfill.js";
import { createUsageProcessor } from "./usage-processor.js";

export const WORKER_CONCURRENCY = 8;

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
  const usageJobs = startUsageJobs(deps, () => priceBook);
  // A policy that names a kind it did not before blocks those principals of accounts already blocked.
  enforceCurrentPolicy(deps.database.pool, deps.settings.enforcement).then(
    (decided) => decided > 0 && deps.logger.info({ decided }, "enforcement: the current policy decided actions for accounts already blocked"),
    (error) => deps.logger.warn({ err: error }, "enforcement: accounts already blocked could not be checked against the current policy"),
  );
  const { litellmAdmin } = deps.settings;
  const backfill = startGatewayBackfill(deps, () => priceBook);
  // In the order they stop: the background tasks, then the jobs in hand.
  const parts = [
    startStrandedAlertSweep(deps),
    startAlertPrune(deps),
    backfill,
    startCreditExpiry(deps),
    startUsageRollup(deps),
    litellmAdmin === undefined
      ? null
      : startEnforcementDelivery({ pool: deps.database.pool, admin: createLitellmAdmin(litellmAdmin), logger: deps.logger, metrics: deps.metrics }),
    usageJobs,
  ].filter((part) => part !== null);
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
  return { name: "usage worker", reloadPriceBook, stop: () => stopInOrder(parts) };
}

/** The BullMQ worker that runs usage jobs, WORKER_CONCURRENCY at a time. */
function startUsageJobs(deps: WorkerDeps, currentPriceBook: () => PriceBook): Stoppable {
  const connection = createRedis(deps.settings.redis, { forWorker: true });
  const chargeJob = createUsageProcessor(deps, currentPriceBook);
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
  return {
    name: "usage jobs",
    stop: async () => {
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

