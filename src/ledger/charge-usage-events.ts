import type pg from "pg";
import type { PriceBook } from "../pricing/price-book.js";
import { priceUsageEvent } from "../pricing/price-usage-event.js";
import type { UsageEvent } from "../queue/contract.js";
import type { QuarantineEntry } from "./quarantine.js";
import { type PricedUsage, recordUsageBatch, type UsageBatchResult } from "./record-usage.js";

export type ChargeUsageResult = UsageBatchResult & { failedCallsSkipped: number };

/**
 * Prices each event and records the batch: failed calls are not charged, events with no
 * billing account or no trustworthy price are quarantined, the rest are charged once.
 */
export async function chargeUsageEvents(
  pool: pg.Pool,
  settings: { priceBook: PriceBook; lowBalanceThresholds: readonly bigint[] },
  events: UsageEvent[],
): Promise<ChargeUsageResult> {
  const charges: PricedUsage[] = [];
  const quarantines: QuarantineEntry[] = [];
  let failedCallsSkipped = 0;
  for (const event of events) {
    if (event.status === "failure") {
      failedCallsSkipped += 1;
      continue;
    }
    const { billingAccountId } = event;
    if (billingAccountId === null) {
      quarantines.push(workerQuarantine(event, "no_billing_account", "no billing account field is set"));
      continue;
    }
    const pricing = priceUsageEvent(event, settings.priceBook);
    if (!pricing.priced) {
      quarantines.push(workerQuarantine(event, pricing.reason, pricing.message));
      continue;
    }
    charges.push({ event: { ...event, billingAccountId }, charge: pricing.charge });
  }
  const result = await recordUsageBatch(pool, {
    charges,
    quarantines,
    priceBookHash: settings.priceBook.hash,
    lowBalanceThresholds: settings.lowBalanceThresholds,
  });
  return { ...result, failedCallsSkipped };
}

function workerQuarantine(event: UsageEvent, reason: string, message: string): QuarantineEntry {
  return {
    stage: "worker",
    reason,
    idempotencyKey: event.idempotencyKey,
    detail: { message },
    item: event,
    model: event.model,
    modelGroup: event.modelGroup,
  };
}
