import pg from "pg";
import type { PricedUsage } from "../src/books/record-usage.js";
import { decimal } from "../src/pricing/decimal.js";

type UsageEvent = PricedUsage["event"];

/**
 * A call as the books take it, priced from a price book entry at `credits`, for the benches that
 * drive recordUsageBatch directly: one token each way of model "m" unless `event` says otherwise.
 */
export function pricedUsage(
  event: Pick<UsageEvent, "idempotencyKey" | "billingAccountId"> & Partial<UsageEvent>,
  credits: bigint,
  priceEntry = event.model ?? "m",
): PricedUsage {
  return {
    event: {
      status: "success", cacheHit: false, model: "m", modelGroup: null, modelMapKey: null, provider: null, promptTokens: 1, completionTokens: 1,
      cacheReadTokens: 0, cacheWriteTokens: 0, reasoningTokens: 0, reportedCostUsd: null, eventTime: null,
      ...event,
    } as UsageEvent,
    charge: {
      pricingSource: "price_book", rateStep: "price_book", priceEntry, contextTier: null, serviceTier: null, lines: [],
      providerCostUsd: decimal(`${credits}e-7`), chargedCredits: credits, reportedCostUsd: null, reason: null, divergence: null,
    },
  };
}

/** One statement on the server's maintenance database (the benches create and drop their own). */
export async function onServer(serverUrl: string, sql: string) {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    return (await admin.query(sql)).rows;
  } finally {
    await admin.end();
  }
}
