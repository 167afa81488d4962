import { deliverStrandedAlerts } from "../books/alert-outbox.js";
import type { WorkerDeps } from "../platform/deps.js";
import type { Stoppable } from "../platform/process.js";
import { startPeriodicTask } from "./periodic-task.js";

const STRANDED_ALERT_SWEEP_MS = 15_000;
// Older than any live worker takes between commit and delivery.
const STRANDED_ALERT_AGE_MS = 60_000;
// Outbox rows per transaction: a row holds a whole batch's alerts, so a few rows bound the memory a sweep holds.
const STRANDED_ROWS_PER_SWEEP = 10;

/**
 * Every 15 s, logs the alerts a process committed and died before delivering (deliverStrandedAlerts),
 * a few rows a transaction until none is left.
 */
export function startStrandedAlertSweep(deps: WorkerDeps): Stoppable {
  return startPeriodicTask({
    name: "stranded alert sweep",
    everyMs: STRANDED_ALERT_SWEEP_MS,
    runAtStart: false,
    run: async (stopping) => {
      let delivered: number;
      do {
        delivered = await deliverStrandedAlerts(deps.database.pool, deps.logger, { olderThanMs: STRANDED_ALERT_AGE_MS, limit: STRANDED_ROWS_PER_SWEEP });
      } while (delivered > 0 && !stopping());
    },
    onFailure: (error) => deps.logger.warn({ err: error }, "stranded alert sweep failed"),
  });
}
