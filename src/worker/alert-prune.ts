import { pruneDeliveredAlerts } from "../books/alert-outbox.js";
import type { WorkerDeps } from "../platform/deps.js";
import type { Stoppable } from "../platform/process.js";
import { startPeriodicTask } from "./periodic-task.js";

const ALERT_PRUNE_MS = 60_000;
// Rows per statement: each delete is one short transaction, so no lock is held long.
const ALERT_PRUNE_BATCH = 500;

/**
 * Every minute, deletes the outbox rows delivered more than ALERT_RETENTION ago
 * (pruneDeliveredAlerts), a bounded batch per statement until none is left. Workers prune side by
 * side: each skips the rows another has taken.
 */
export function startAlertPrune(deps: WorkerDeps): Stoppable {
  return startPeriodicTask({
    name: "alert prune",
    everyMs: ALERT_PRUNE_MS,
    runAtStart: true,
    run: async (stopping) => {
      let pruned: number;
      do {
        pruned = await pruneDeliveredAlerts(deps.database.pool, { retentionMs: deps.settings.alertRetentionMs, limit: ALERT_PRUNE_BATCH });
        deps.metrics.alertOutboxPruned.inc(pruned);
      } while (pruned === ALERT_PRUNE_BATCH && !stopping());
    },
    onFailure: (error) => deps.logger.warn({ err: error }, "alert prune failed; the next one tries again"),
  });
}
