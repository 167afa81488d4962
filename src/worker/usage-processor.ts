import { type Job, UnrecoverableError } from "bullmq";
import type { Logger } from "pino";
import type { z } from "zod";
import { deliverCommittedAlerts } from "../books/alert-outbox.js";
import type { WorkerDeps } from "../platform/deps.js";
import { chargeUsageEvents } from "./charge-usage-events.js";
import type { PricedUsage } from "../books/record-usage.js";
import type { ChargeOutcome, Metrics } from "../platform/metrics.js";
import { quarantineRejectedItems } from "../books/quarantine.js";
import type { PriceBook } from "../pricing/price-book.js";
import { chargeUsageJobSchema, JOB_CHARGE_USAGE, JOB_QUARANTINE_ITEMS, quarantineItemsJobSchema, type USAGE_JOB_NAMES } from "../platform/queue.js";
import { parseUsageEvents } from "../usage/usage-event.js";

/**
 * Parse the job, call the ledger, deliver the alerts it committed, return what happened.
 * `currentPriceBook` is read per job, so a reloaded book prices the next job.
 */
export function createUsageProcessor(deps: WorkerDeps, currentPriceBook: () => PriceBook) {
  const { pool } = deps.database;
  const { metrics } = deps;
  const processors: Record<(typeof USAGE_JOB_NAMES)[number], (job: Job, log: Logger) => Promise<unknown>> = {
    [JOB_CHARGE_USAGE]: async (job, log) => {
      const { valid: events, invalid } = parseUsageEvents(parseJobData(chargeUsageJobSchema, job).events);
      const settings = { priceBook: currentPriceBook(), lowBalanceThresholds: deps.settings.lowBalanceThresholds, enforcement: deps.settings.enforcement };
      const started = performance.now();
      const result = await chargeUsageEvents(pool, settings, events, invalid);
      // usage_hourly commits with the receipts: their usage trails a charge by the charge's own transaction.
      if (result.charged.length > 0) metrics.usageRollupLag.set((performance.now() - started) / 1000);
      await deliverCommittedAlerts(pool, deps.logger, result.alerts);
      const summary = {
        charged: result.charged.length,
        free: result.charged.filter((usage) => usage.charge.pricingSource === "free").length,
        duplicates: result.duplicates,
        conflicts: result.conflicts,
        quarantined: result.quarantined,
        failedCallsSkipped: result.failedCallsSkipped,
      };
      recordChargeMetrics(metrics, result.charged, summary);
      for (const { charge } of result.charged) {
        if (charge.divergence) metrics.priceDivergences.inc({ rate_step: charge.divergence.step, action: settings.priceBook.onDivergence });
      }
      for (const { step } of result.divergencesQuarantined) metrics.priceDivergences.inc({ rate_step: step, action: "quarantine" });
      log.debug({ events: events.length, ...summary }, "usage charged");
      return summary;
    },
    [JOB_QUARANTINE_ITEMS]: async (job, log) => {
      const { items } = parseJobData(quarantineItemsJobSchema, job);
      const { alerts, inserted } = await quarantineRejectedItems(pool, items);
      await deliverCommittedAlerts(pool, deps.logger, alerts);
      log.debug({ items: items.length, inserted }, "rejected items quarantined");
      return { quarantined: inserted };
    },
  };
  return async (job: Job) => {
    const processor = Object.hasOwn(processors, job.name) ? processors[job.name as keyof typeof processors] : undefined;
    if (processor === undefined) throw new UnrecoverableError(`unknown job name ${job.name}`);
    // A job that fails is timed too: one that fails slowly (a database that does not answer) is
    // what an operator looks for here.
    const timer = metrics.jobDuration.startTimer({ job: job.name });
    try {
      return await processor(job, deps.logger.child({ jobId: job.id, job: job.name, attempt: job.attemptsMade + 1 }));
    } finally {
      timer();
    }
  };
}

function recordChargeMetrics(
  metrics: Metrics,
  charged: PricedUsage[],
  summary: { charged: number; free: number; duplicates: number; conflicts: number; quarantined: number; failedCallsSkipped: number },
): void {
  const committedAt = Date.now();
  metrics.chargesRecorded.inc(summary.charged);
  const outcomes: Array<[ChargeOutcome, number]> = [
    ["charged", summary.charged - summary.free],
    ["free", summary.free],
    ["duplicate", summary.duplicates],
    ["conflict", summary.conflicts],
    ["quarantined", summary.quarantined],
    ["failed_call_skipped", summary.failedCallsSkipped],
  ];
  for (const [outcome, count] of outcomes) if (count > 0) metrics.chargeOutcomes.inc({ outcome }, count);
  const tierAssumed = charged.filter(({ event }) => event.tierUnknown === true).length;
  if (tierAssumed > 0) metrics.chargesTierAssumed.inc(tierAssumed);
  for (const { event } of charged) {
    if (event.eventTime !== null) metrics.eventToLedger.observe(Math.max(0, (committedAt - Date.parse(event.eventTime)) / 1000));
  }
}

function parseJobData<T>(schema: z.ZodType<T>, job: Job): T {
  const parsed = schema.safeParse(job.data);
  // A job this version cannot read will not become readable by retrying; it stays in failed.
  if (!parsed.success) throw new UnrecoverableError(`job ${job.id} data does not parse: ${parsed.error.message}`);
  return parsed.data;
}
