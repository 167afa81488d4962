import { statSync } from "node:fs";
import type { ChargeReceipt } from "../books/account-reads.js";
import { compare, decimal } from "../pricing/decimal.js";
import { explainCredits, explainTerms, type ExplainedTerm } from "../pricing/explain-charge.js";
import { loadPriceBook, type PriceBook } from "../pricing/price-book.js";
import { priceUsageEvent } from "../pricing/price-usage-event.js";
import type { UsageEvent } from "../usage/usage-event.js";

/** A receipt's price, term by term as `ops price` explains it, when the receipt alone reproduces it. */
export type ReceiptExplanation =
  | { reproduced: true; terms: ExplainedTerm[]; credits: string; tiers: string[] }
  | { reproduced: false; why: string };

/**
 * The price book the receiver reads for explanations: loaded at the first receipt page and again
 * whenever the file changes, so a book the workers were SIGHUPed onto is the one shown. A book
 * that does not load is shown as the reason, never thrown.
 */
export function createPriceBookReader(pricingFile: string): () => PriceBook | Error {
  let loaded: { mtimeMs: number; book: PriceBook | Error } | undefined;
  return () => {
    try {
      const { mtimeMs } = statSync(pricingFile);
      if (loaded?.mtimeMs !== mtimeMs) loaded = { mtimeMs, book: loadPriceBook(pricingFile) };
      return loaded.book;
    } catch (error) {
      return error as Error;
    }
  };
}

/**
 * Prices the call again from what its receipt keeps, with the book that priced it (same hash),
 * and shows the terms if that gives the receipt's own cost and credits. A receipt keeps the
 * tokens and names, not the call's own rates (LiteLLM's model_map_value), tiers or audio and
 * web-search counts: a call priced from those is shown by its stored totals alone.
 */
export function explainReceipt(receipt: ChargeReceipt, book: PriceBook | Error): ReceiptExplanation {
  if (book instanceof Error) return { reproduced: false, why: `the price book does not load: ${book.message}` };
  if (book.hash !== receipt.priceBookHash) {
    return { reproduced: false, why: `priced with another price book (${receipt.priceBookHash.slice(0, 12)}…; the receiver reads ${book.hash.slice(0, 12)}…)` };
  }
  const outcome = priceUsageEvent(usageEventOf(receipt), book);
  if (!outcome.priced) return { reproduced: false, why: `the receipt alone does not reproduce its price (${outcome.message})` };
  const { charge } = outcome;
  if (charge.chargedCredits !== receipt.chargedCredits || compare(charge.providerCostUsd, decimal(receipt.providerCostUsd)) !== 0) {
    return { reproduced: false, why: "the receipt alone does not reproduce its price: the call was priced with rates, tiers or counts a receipt does not keep" };
  }
  return {
    reproduced: true,
    terms: explainTerms(charge.lines),
    credits: explainCredits(charge.providerCostUsd, charge.chargedCredits, book),
    tiers: [charge.contextTier && `context tier ${charge.contextTier}`, charge.serviceTier && `service tier ${charge.serviceTier}`].filter((tier) => typeof tier === "string"),
  };
}

function usageEventOf(receipt: ChargeReceipt): UsageEvent {
  return {
    idempotencyKey: receipt.idempotencyKey,
    billingAccountId: receipt.billingAccountId,
    status: "success",
    cacheHit: receipt.pricingSource === "cache_hit",
    model: receipt.model,
    modelGroup: receipt.modelGroup,
    modelMapKey: null,
    provider: null,
    promptTokens: receipt.promptTokens,
    completionTokens: receipt.completionTokens,
    cacheReadTokens: receipt.cacheReadTokens,
    cacheWriteTokens: receipt.cacheWriteTokens,
    reasoningTokens: receipt.reasoningTokens,
    reportedCostUsd: receipt.reportedCostUsd,
    eventTime: receipt.eventTime?.toISOString() ?? null,
  };
}
