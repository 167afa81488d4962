import type { UsageEvent } from "../queue/contract.js";
import { add, ceilToBigInt, type Decimal, decimal, fromBigInt, isZero, multiply, ZERO } from "./decimal.js";
import { CONTEXT_TIERS, type ModelRates, type PriceBook, type TieredRateField } from "./price-book.js";

export type PricingSource = "free" | "cache_hit" | "price_book" | "reported_cost";

export type TokenClass = "uncached_prompt" | "cache_read" | "cache_write" | "completion" | "reasoning";

/** One term of a token-priced call: tokens × the rate that applied. */
export type PricedLine = { tokenClass: TokenClass; tokens: number; rateField: string; rateUsd: Decimal; costUsd: Decimal };

export type Charge = {
  pricingSource: PricingSource;
  /** The price-book entry that priced the call, when one did. */
  priceEntry: string | null;
  /** Where that entry came from, when one priced the call. */
  priceEntryOrigin: ModelRates["origin"] | null;
  /** The context tier whose rates applied (`_above_200k_tokens`), if any. */
  contextTier: string | null;
  /** The terms of the sum, for a call priced from the book; empty otherwise. */
  lines: PricedLine[];
  providerCostUsd: Decimal;
  chargedCredits: bigint;
};

export type PricingOutcome =
  | { priced: true; charge: Charge }
  | { priced: false; reason: "unpriced_model"; message: string };

/** The one function from a usage event to what it costs; pure, exact, never negative. */
export function priceUsageEvent(event: UsageEvent, book: PriceBook): PricingOutcome {
  const entryName = findPriceEntry(event, book);
  if (freeModelNames(event, entryName, book).some((name) => book.isFreeModel(name))) return unitemised(book, "free", ZERO);
  if (event.cacheHit) return unitemised(book, "cache_hit", ZERO);

  if (entryName !== undefined) {
    const entry = book.models.get(entryName)!;
    const { tier, lines } = tokenCostLines(event, entry);
    const providerCostUsd = lines.map((line) => line.costUsd).reduce(add, ZERO);
    return {
      priced: true,
      charge: {
        pricingSource: "price_book",
        priceEntry: entryName,
        priceEntryOrigin: entry.origin,
        contextTier: tier,
        lines,
        providerCostUsd,
        chargedCredits: creditsForCost(providerCostUsd, book),
      },
    };
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
  return unitemised(book, "reported_cost", reported);
}

/** model_group, model, model_map_key, each also without a leading `provider/`. */
export function candidateModelNames(event: UsageEvent): string[] {
  return [...new Set([event.modelGroup, event.model, event.modelMapKey].flatMap(withAndWithoutProvider))];
}

/**
 * The entry that prices the call: the operator's own entries by any of the call's names first,
 * then LiteLLM's cost map by the model that served it, never by model_group: an alias is the
 * operator's name, and often reuses (or is chosen by a caller to match) another model's.
 */
function findPriceEntry(event: UsageEvent, book: PriceBook): string | undefined {
  const names = candidateModelNames(event);
  const servedNames = new Set([event.model, event.modelMapKey].flatMap(withAndWithoutProvider));
  return (
    names.find((name) => book.models.get(name)?.origin === "price_book") ??
    names.find((name) => servedNames.has(name) && book.models.has(name))
  );
}

/**
 * The names `free_models` is matched against: the operator's entry the call is priced by, else
 * the model that served it. Never every name the payload carries, since a caller can add a name
 * (`model_map_key: "x:free"`) beside a priced model; never model_group alone, since an alias
 * says nothing of what served the call.
 */
function freeModelNames(event: UsageEvent, entryName: string | undefined, book: PriceBook): string[] {
  if (entryName !== undefined && book.models.get(entryName)!.origin === "price_book") return [entryName];
  return withAndWithoutProvider(event.model ?? event.modelMapKey);
}

function withAndWithoutProvider(name: string | null): string[] {
  if (name === null) return [];
  const slash = name.indexOf("/");
  return slash > 0 && slash < name.length - 1 ? [name, name.slice(slash + 1)] : [name];
}

/** Whole credits for a USD cost: ceil(cost × markup × credits_per_usd). */
export function creditsForCost(costUsd: Decimal, book: PriceBook): bigint {
  return ceilToBigInt(multiply(multiply(costUsd, book.markup), book.creditsPerUsd));
}

/** A charge with no token terms: free, a cache hit, or LiteLLM's reported cost. */
function unitemised(book: PriceBook, pricingSource: PricingSource, cost: Decimal): PricingOutcome {
  return {
    priced: true,
    charge: {
      pricingSource,
      priceEntry: null,
      priceEntryOrigin: null,
      contextTier: null,
      lines: [],
      providerCostUsd: cost,
      chargedCredits: creditsForCost(cost, book),
    },
  };
}

function tokenCostLines(event: UsageEvent, entry: ModelRates): { tier: string | null; lines: PricedLine[] } {
  const { tier, rate } = contextTierRates(event.promptTokens, entry);
  const input = rate("input_cost_per_token") ?? { field: "input_cost_per_token", rate: ZERO };
  const output = rate("output_cost_per_token") ?? { field: "output_cost_per_token", rate: ZERO };
  const reasoningRate = entry.rates.output_cost_per_reasoning_token;
  const line = (tokenClass: TokenClass, tokens: number, applied: AppliedRate): PricedLine => ({
    tokenClass,
    tokens,
    rateField: applied.field,
    rateUsd: applied.rate,
    costUsd: multiply(fromBigInt(BigInt(tokens)), applied.rate),
  });
  return {
    tier,
    lines: [
      line("uncached_prompt", event.promptTokens - event.cacheReadTokens - event.cacheWriteTokens, input),
      line("cache_read", event.cacheReadTokens, rate("cache_read_input_token_cost") ?? input),
      line("cache_write", event.cacheWriteTokens, rate("cache_creation_input_token_cost") ?? input),
      line("completion", event.completionTokens - event.reasoningTokens, output),
      line(
        "reasoning",
        event.reasoningTokens,
        reasoningRate ? { field: "output_cost_per_reasoning_token", rate: reasoningRate } : output,
      ),
    ],
  };
}

type AppliedRate = { field: string; rate: Decimal };

/**
 * Above a context tier's threshold, an entry that has that tier's rates prices the whole call
 * with them; a class without a tier rate keeps its base rate.
 */
function contextTierRates(
  promptTokens: number,
  entry: ModelRates,
): { tier: string | null; rate: (field: TieredRateField) => AppliedRate | undefined } {
  const tier = CONTEXT_TIERS.find(
    ({ threshold, suffix }) =>
      promptTokens > threshold &&
      (entry.rates[`input_cost_per_token${suffix}`] !== undefined ||
        entry.rates[`output_cost_per_token${suffix}`] !== undefined),
  );
  const rate = (field: TieredRateField): AppliedRate | undefined => {
    const tiered = tier ? entry.rates[`${field}${tier.suffix}`] : undefined;
    if (tiered) return { field: `${field}${tier!.suffix}`, rate: tiered };
    const base = entry.rates[field];
    return base ? { field, rate: base } : undefined;
  };
  return { tier: tier?.suffix.slice(1) ?? null, rate };
}
