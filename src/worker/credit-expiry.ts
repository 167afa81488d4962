import { deliverCommittedAlerts } from "../books/alert-outbox.js";
import { expireCredits } from "../books/expire-credits.js";
import type { WorkerDeps } from "../platform/deps.js";
import type { Stoppable } from "../platform/process.js";
import { startPeriodicTask } from "./periodic-task.js";

const BUCKETS_PER_PASS = 500;
// A sweep behind by much commits in bounded passes; this many per tick, the rest on the next.
const PASSES_PER_TICK = 20;

/**
 * Every CREDIT_EXPIRY_INTERVAL (15 s by default, at most 30 s, so credits leave the balance
 * within a minute of their expiry), expires what is due and raises credits_expiring, in bounded transactions
 * (src/books/expire-credits.ts). A failure is logged; the next tick tries again, and a pass
 * rolled back left nothing half done.
 */
export function startCreditExpiry(deps: WorkerDeps): Stoppable {
  return startPeriodicTask({
    name: "credit expiry",
    everyMs: deps.settings.creditExpiryIntervalMs,
    runAtStart: true,
    run: async (stopping) => {
      for (let pass = 0; pass < PASSES_PER_TICK && !stopping(); pass++) {
        const done = await expireCredits(deps.database.pool, {
          limit: BUCKETS_PER_PASS,
          expiringWithinMs: deps.settings.creditsExpiringWithinMs,
          lowBalanceThresholds: deps.settings.lowBalanceThresholds,
          enforcement: deps.settings.enforcement,
        });
        await deliverCommittedAlerts(deps.database.pool, deps.logger, done.alerts);
        if (done.expired > 0) deps.logger.info({ expired: done.expired, expiring: done.expiring }, "credit buckets expired");
        if (done.expired < BUCKETS_PER_PASS && done.expiring < BUCKETS_PER_PASS) return;
      }
    },
    onFailure: (error) => deps.logger.warn({ err: error }, "credit expiry sweep failed; the next one tries again"),
  });
}
