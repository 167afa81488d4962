import type pg from "pg";
import type { EnforcementPolicy } from "../books/enforcement.js";
import type { PriceBook } from "../pricing/price-book.js";
import { priceUsageEvent } from "../pricing/price-usage-event.js";
import type { DivergenceStep } from "../usage/rate-fields.js";
import type { UsageEvent } from "../usage/usage-event.js";
import { type QuarantineEntry, quarantineEntry } from "../books/quarantine.js";
import { type PricedUsage, recordUsageBatch, type UsageBatch, type UsageBatchResult } from "../books/record-usage.js";

export type ChargeUsageResult = UsageBatchResult & {
  failedCallsSkipped: number;
  /** Calls held in quarantine because their rates and LiteLLM's figure differ (on_divergence: quarantine). */
  divergencesQuarantined: Array<{ step: DivergenceStep }>;
};

/**
 * Prices each event and records the batch: events with no billing account or no trustworthy
 * price are quarantined, failed calls are not charged, the rest are charged once. Events a job
 * carried that this version cannot read are quarantined as `invalid_job_event`.
 */
export async function chargeUsageEvents(
  pool: pg.Pool,
  settings: { priceBook: PriceBook; lowBalanceThresholds: readonly bigint[]; enforcement: EnforcementPolicy },
  events: UsageEvent[],
  unreadable: Array<{ item: unknown; issues: string[] }> = [],
): Promise<ChargeUsageResult> {
  const charges: PricedUsage[] = [];
  const quarantines: QuarantineEntry[] = unreadable.map(({ item, issues }) =>
    quarantineEntry("worker", "invalid_job_event", { item, idempotencyKey: null }, { issues }),
  );
  let failedCallsSkipped = 0;
  const divergencesQuarantined: ChargeUsageResult["divergencesQuarantined"] = [];
  for (const event of events) {
    if (!hasBillingAccount(event)) {
      quarantines.push(quarantineEntry("worker", "no_billing_account", { event }, { message: "no billing account field is set" }));
      continue;
    }
    if (event.status === "failure") {
      failedCallsSkipped += 1;
      continue;
    }
    const pricing = priceUsageEvent(event, settings.priceBook);
    if (!pricing.priced) {
      quarantines.push(quarantineEntry("worker", pricing.reason, { event, divergence: pricing.divergence }, { message: pricing.message }));
      if (pricing.divergence) divergencesQuarantined.push({ step: pricing.divergence.step });
      continue;
    }
    charges.push({ event, charge: pricing.charge });
  }
  const result = await recordQuarantiningRefusedEvents(pool, {
    charges,
    quarantines,
    priceBookHash: settings.priceBook.hash,
    lowBalanceThresholds: settings.lowBalanceThresholds,
    enforcement: settings.enforcement,
  });
  return { ...result, failedCallsSkipped, divergencesQuarantined };
}

// Narrows the event itself: a copy of every event only to change its type was a share of the worker's garbage.
function hasBillingAccount(event: UsageEvent): event is PricedUsage["event"] {
  return event.billingAccountId !== null;
}

/**
 * Records the batch; when PostgreSQL refuses its data (a value out of range, a broken
 * constraint), halves it until the one event it refuses is found and quarantines that event
 * as `unrecordable`, so one bad event never holds up the rest. Transient faults still throw.
 */
async function recordQuarantiningRefusedEvents(pool: pg.Pool, batch: UsageBatch): Promise<UsageBatchResult> {
  try {
    return await recordUsageBatch(pool, batch);
  } catch (error) {
    if (!isRefusedData(error) || batch.charges.length === 0) throw error;
    if (batch.charges.length === 1) {
      const { event } = batch.charges[0]!;
      const refused = quarantineEntry("worker", "unrecordable", { event }, { message: `PostgreSQL refused it: ${(error as Error).message}` });
      return recordUsageBatch(pool, { ...batch, charges: [], quarantines: [...batch.quarantines, refused] });
    }
    const middle = Math.ceil(batch.charges.length / 2);
    const first = await recordQuarantiningRefusedEvents(pool, { ...batch, charges: batch.charges.slice(0, middle) });
    const second = await recordQuarantiningRefusedEvents(pool, { ...batch, charges: batch.charges.slice(middle), quarantines: [] });
    return {
      charged: [...first.charged, ...second.charged],
      duplicates: first.duplicates + second.duplicates,
      conflicts: first.conflicts + second.conflicts,
      quarantined: first.quarantined + second.quarantined,
      alerts: [...first.alerts, ...second.alerts],
    };
  }
}

// SQLSTATE classes 22 (data exception), 23 (integrity constraint violation) and 54 (program
// limit exceeded, such as an index row too large): the same data fails the same way on every retry.
function isRefusedData(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && ["22", "23", "54"].includes(code.slice(0, 2));
}
