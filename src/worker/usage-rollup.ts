import { rollUpUsage } from "../books/usage-rollup.js";
import type { WorkerDeps } from "../platform/deps.js";
import type { Stoppable } from "../platform/process.js";
import { startPeriodicTask } from "./periodic-task.js";

/**
 * Every USAGE_ROLLUP_INTERVAL (10 s by default, at most 30 s), adds the receipts committed since
 * the last run to usage_hourly (src/books/usage-rollup.ts): one worker at a time runs it, the
 * others skip their turn. A failure is logged; the next tick starts from the same watermark.
 */
export function startUsageRollup(deps: WorkerDeps): Stoppable {
  return startPeriodicTask({
    name: "usage rollup",
    everyMs: deps.settings.usageRollupIntervalMs,
    runAtStart: true,
    run: async () => {
      const rollup = await rollUpUsage(deps.database.pool);
      deps.metrics.usageRolledUpAt(rollup.rolledUpAt);
    },
    onFailure: (error) => deps.logger.warn({ err: error }, "usage rollup failed; the next one starts where it would have"),
  });
}
