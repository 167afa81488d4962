import { deliverStrandedAlerts } from "../books/alert-outbox.js";
import type { WorkerDeps } from "../platform/deps.js";
import type { Stoppable } from "../platform/process.js";
import { startPeriodicTask } from "./periodic-task.js";

const STRANDED_ALERT_SWEEP_MS = 15_000;
// Older than any live worker takes between commit and delivery.
const STRANDED_ALERT_AGE_MS = 60_000;

/** Every 15 s, logs the alerts a process committed and died before delivering (deliverStrandedAlerts). */
export function startStrandedAlertSweep(deps: WorkerDeps): Stoppable {
  return startPeriodicTask({
    name: "stranded alert sweep",
    everyMs: STRANDED_ALERT_SWEEP_MS,
    runAtStart: false,
    run: async () => {
      await deliverStrandedAlerts(deps.database.pool, deps.logger, { olderThanMs: STRANDED_ALERT_AGE_MS });
    },
    onFailure: (error) => deps.logger.warn({ err: error }, "stranded alert sweep failed"),
  });
}
