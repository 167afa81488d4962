import type { UsageEvent } from "../queue/contract.js";
import {
  add,
  ceilToBigInt,
  type Decimal,
  decimal,
  fromBigInt,
  isZero,
  multiply,
  ZERO,
} from "./decimal.js";
import { CONTEXT_TIERS, type ModelRates, type PriceBook, type TieredRateField } from "./price-book.js";

export type PricingSource = "free" | "cache_hit" | "price_book" | "reported_cost";

export type Charge = {
  pricingSource: PricingSource;
  /** The price-book entry that priced the call, when one did. */
  priceEntry: string | null;
  providerCostUsd: Decimal;
  chargedCredits: bigint;
};

export type PricingOutcome =
  | { priced: true; charge: Charge }
  | { priced: false; reason: "unpriced_model"; message: string };

/** The one function from a usage event to what it costs; pure, exact, never negative. */
export function priceUsageEvent(event: UsageEvent, book: PriceBook): PricingOutcome {
  const names = candidateModelNames(event);
  if (names.some((name) => book.isFreeModel(name))) return charged(book, "free", null, ZERO);
  if (event.cacheHit) return charged(book, "cache_hit", null, ZERO);

  const entryName = names.find((name) => book.models.has(name));
  if (entryName !== undefined) {
    return charged(book, "price_book", entryName, tokenCostUsd(event, book.models.get(entryName)!));
  }

  const label = event.modelGroup ?? event.model ?? event.modelMapKey ?? "(no model)";
  if (book.unknownModels === "quarantine") {
    return { priced: false, reason: "unpriced_model", message: `${label} is not in the price book` };
  }
  if (event.reportedCostUsd === null) {
    return { priced: false, reason: "unpriced_model", message: `${label} is not in the price book and LiteLLM reported no cost` };
  }
  const reported = decimal(event.reportedCostUsd);
  if (isZero(reported) && event.promptTokens + event.completionTokens > 0) {
    return {
      priced: false,
      reason: "unpriced_model",
      message: `${label} is not in the price book and LiteLLM reported 0 for a call with tokens`,
    };
  }
  return charged(book, "reported_cost", null, reported);
}

/** model_group, model, model_map_key, each also without a leading `provider/`. */
export function candidateModelNames(event: UsageEvent): string[] {
  const names: string[] = [];
  for (const name of [event.modelGroup, event.model, event.modelMapKey]) {
    if (name === null) continue;
    names.push(name);
    const slash = name.indexOf("/");
    if (slash > 0 && slash < name.length - 1) names.push(name.slice(slash + 1));
  }
  return [...new Set(names)];
}

/** Whole credits for a USD cost: ceil(cost × markup × credits_per_usd). */
export function creditsForCost(costUsd: Decimal, book: PriceBook): bigint {
  return ceilToBigInt(multiply(multiply(costUsd, book.markup), book.creditsPerUsd));
}

function charged(book: PriceBook, pricingSource: PricingSource, priceEntry: string | null, cost: Decimal): PricingOutcome {
  return {
    priced: true,
    charge: { pricingSource, priceEntry, providerCostUsd: cost, chargedCredits: creditsForCost(cost, book) },
  };
}

function tokenCostUsd(event: UsageEvent, entry: ModelRates): Decimal {
  const rate = contextTierRates(event.promptTokens, entry);
  const input = rate("input_cost_per_token") ?? ZERO;
  const output = rate("output_cost_per_token") ?? ZERO;
  const cacheRead = rate("cache_read_input_token_cost") ?? input;
  const cacheWrite = rate("cache_creation_input_token_cost") ?? input;
  const reasoning = entry.rates.output_cost_per_reasoning_token ?? output;

  const uncachedPrompt = event.promptTokens - event.cacheReadTokens - event.cacheWriteTokens;
  const plainCompletion = event.completionTokens - event.reasoningTokens;
  return [
    cost(uncachedPrompt, input),
    cost(event.cacheReadTokens, cacheRead),
    cost(event.cacheWriteTokens, cacheWrite),
    cost(plainCompletion, output),
    cost(event.reasoningTokens, reasoning),
  ].reduce(add, ZERO);
}

/**
 * Above a context tier's threshold, an entry that has that tier's rates prices the whole call
 * with them; a class without a tier rate keeps its base rate.
 */
function contextTierRates(promptTokens: number, entry: ModelRates): (field: TieredRateField) => Decimal | undefined {
  const tier = CONTEXT_TIERS.find(
    ({ threshold, suffix }) =>
      promptTokens > threshold &&
      (entry.rates[`input_cost_per_token${suffix}`] !== undefined ||
        entry.rates[`output_cost_per_token${suffix}`] !== undefined),
  );
  return (field) => (tier ? entry.rates[`${field}${tier.suffix}`] : undefined) ?? entry.rates[field];
}

function cost(tokens: number, rate: Decimal): Decimal {
  return multiply(fromBigInt(BigInt(tokens)), rate);
}
