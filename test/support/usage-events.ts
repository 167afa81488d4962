import type { PricedUsage } from "../../src/books/record-usage.js";
import { decimal } from "../../src/pricing/decimal.js";
import type { UsageEvent } from "../../src/usage/usage-event.js";

let eventCounter = 0;

/** A usage event with neutral defaults: success, no cache hit, zero tokens, no names, no cost. */
export function usageEvent(overrides: Partial<UsageEvent> = {}): UsageEvent {
  eventCounter += 1;
  return {
    idempotencyKey: `test-call-${eventCounter}`,
    billingAccountId: "acct-1",
    status: "success",
    cacheHit: false,
    model: null,
    modelGroup: null,
    modelMapKey: null,
    provider: null,
    promptTokens: 0,
    completionTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    reportedCostUsd: null,
    eventTime: null,
    ...overrides,
  };
}

/** A call already priced at `credits`, as the worker hands it to the books. */
export function pricedUsage(key: string, account: string, credits: number | bigint): PricedUsage {
  return {
    event: usageEvent({ idempotencyKey: key, billingAccountId: account, model: "m", promptTokens: 1 }) as PricedUsage["event"],
    charge: {
      pricingSource: "price_book",
      rateStep: "price_book",
      priceEntry: "m",
      contextTier: null,
      serviceTier: null,
      lines: [],
      providerCostUsd: decimal(`${credits}e-7`),
      chargedCredits: BigInt(credits),
      reportedCostUsd: null,
      reason: null,
      divergence: null,
    },
  };
}
