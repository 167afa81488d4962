import { type Job, UnrecoverableError } from "bullmq";
import type { z } from "zod";
import { deliverAlerts, type OutboxAlert } from "../src/alerts/outbox.js";
import type { Deps } from "../src/deps.js";
import { chargeUsageEvents } from "../src/ledger/charge-usage-events.js";
import { quarantineRejectedItems } from "../src/ledger/quarantine.js";
import type { PriceBook } from "../src/pricing/price-book.js";
import {
  chargeUsageJobSchema,
  JOB_CHARGE_USAGE,
  JOB_QUARANTINE_ITEMS,
  parseUsageEvents,
  quarantineItemsJobSchema,
} from "../src/queue/contract.js";

/**
 * Parse the job, call the ledger, deliver the alerts it committed, return what happened.
 * `currentPriceBook` is read per job, so a reloaded book prices the next job.
 */
export function createUsageProcessor(deps: Deps, currentPriceBook: () => PriceBook) {
  const { pool } = deps.database;
  // The job's work is committed by now; failing it over delivery would redo the work, so a
  // delivery fault is left to the stranded-alert sweeper.
  const deliverCommittedAlerts = (alerts: OutboxAlert[]) =>
    deliverAlerts(pool, deps.logger, alerts).catch((error) =>
      deps.logger.warn({ err: error, alerts: alerts.length }, "alert delivery deferred to the sweeper"),
    );
  return async (job: Job) => {
    const log = deps.logger.child({ jobId: job.id, job: job.name, attempt: job.attemptsMade + 1 });
    switch (job.name) {
      case JOB_CHARGE_USAGE: {
        const { valid: events, invalid } = parseUsageEvents(parseJobData(chargeUsageJobSchema, job).events);
        const settings = { priceBook: currentPriceBook(), lowBalanceThresholds: deps.settings.lowBalanceThresholds };
        const { alerts, ...outcome } = await chargeUsageEvents(pool, settings, events, invalid);
        await deliverCommittedAlerts(alerts);
        log.debug({ events: events.length, ...outcome }, "usage charged");
        return outcome;
      }
      case JOB_QUARANTINE_ITEMS: {
        const { items } = parseJobData(quarantineItemsJobSchema, job);
        const { alerts, inserted } = await quarantineRejectedItems(pool, items);
        await deliverCommittedAlerts(alerts);
        log.debug({ items: items.length, inserted }, "rejected items quarantined");
        return { quarantined: inserted };
      }
      default:
        throw new UnrecoverableError(`unknown job name ${job.name}`);
    }
  };
}

function parseJobData<T>(schema: z.ZodType<T>, job: Job): T {
  const parsed = schema.safeParse(job.data);
  // A job this version cannot read will not become readable by retrying; it stays in failed.
  if (!parsed.success) throw new UnrecoverableError(`job ${job.id} data does not parse: ${parsed.error.message}`);
  return parsed.data;
}
