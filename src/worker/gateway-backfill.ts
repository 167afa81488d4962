import { recordWatermarkLag, runGatewayBackfill } from "../gateway/backfill.js";
import { createSpendLogPool, endSpendLogPool, SpendLogError } from "../litellm/spend-log.js";
import type { WorkerDeps } from "../platform/deps.js";
import type { Stoppable } from "../platform/process.js";
import type { PriceBook } from "../pricing/price-book.js";
import { startPeriodicTask } from "./periodic-task.js";

/**
 * With LITELLM_DATABASE_URL, checks LiteLLM's spend log every GATEWAY_RECONCILE_INTERVAL and bills
 * what its callbacks lost. A failure (LiteLLM's database away) is logged and counted; billing of
 * callbacks goes on untouched, and the next run tries again.
 */
export function startGatewayBackfill(deps: WorkerDeps, currentPriceBook: () => PriceBook): Stoppable | null {
  const { settings } = deps;
  if (settings.litellmDatabaseUrl === undefined) return null;
  const spendLog = createSpendLogPool(settings.litellmDatabaseUrl);
  return startPeriodicTask({
    name: "gateway backfill",
    everyMs: settings.gatewayReconcileIntervalMs,
    runAtStart: false,
    run: async () => {
      await runGatewayBackfill(
        { pool: deps.database.pool, spendLog, queue: deps.usageQueue, logger: deps.logger, metrics: deps.metrics },
        {
          priceBook: currentPriceBook(),
          billingAccountFrom: settings.billingAccountFrom,
          intervalMs: settings.gatewayReconcileIntervalMs,
          lagMs: settings.gatewayReconcileLagMs,
          overlapMs: settings.gatewayReconcileOverlapMs,
          spendLogRetentionMs: settings.litellmSpendLogRetentionMs,
        },
      );
    },
    onFailure: (error, stopping) => {
      // Cut by the shutdown (endSpendLogPool): the watermark did not move, the next start reads the window again.
      if (stopping && error instanceof SpendLogError) return deps.logger.info("gateway backfill cut short by the shutdown");
      deps.metrics.gatewayReconcileFailures.inc();
      const which = error instanceof SpendLogError ? "LiteLLM's database (LITELLM_DATABASE_URL) could not be read" : "it could not record what it found";
      deps.logger.error({ err: error }, `gateway backfill failed: ${which}; the next run tries again`);
      const lagDeps = { pool: deps.database.pool, metrics: deps.metrics, logger: deps.logger };
      return recordWatermarkLag(lagDeps, settings.litellmSpendLogRetentionMs).catch(() => {});
    },
    // A run waiting on LiteLLM's database is cut, not waited for: its wait may last the statement timeout.
    onStop: () => endSpendLogPool(spendLog),
  });
}
