import type { UsageEvent } from "../usage/usage-event.js";
import {
  ceilToBigInt,
  compare,
  type Decimal,
  decimal,
  fromBigInt,
  isZero,
  multiply,
  roundToSignificant,
  subtract,
  sum,
  ZERO,
} from "./decimal.js";
import {
  CONTEXT_TIERS,
  type DivergenceStep,
  type RateStep,
  SEARCH_RATE_FIELD,
  SERVICE_TIERS,
  searchRateField,
  type TokenRateField,
} from "../usage/rate-fields.js";
import { gatewayRates, type ModelRates, type PriceBook } from "./price-book.js";

export type PricingSource = "free" | "cache_hit" | "price_book" | "reported_cost";

export type TokenClass =
  | "uncached_prompt"
  | "cache_read"
  | "cache_write"
  | "cache_write_1h"
  | "completion"
  | "reasoning"
  | "audio_input"
  | "audio_output"
  | "web_search";

/** One term of a priced call: a quantity (tokens, or web search requests) × the rate that applied. */
export type PricedLine = { tokenClass: TokenClass; tokens: number; rateField: string; rateUsd: Decimal; costUsd: Decimal };

/** The exact cost at the gateway's own rates next to LiteLLM's figure, when they differ by a credit or more. */
export type Divergence = {
  step: DivergenceStep;
  entry: string;
  lines: PricedLine[];
  gatewayCostUsd: Decimal;
  gatewayCredits: bigint;
  reportedCredits: bigint;
};

export type Charge = {
  pricingSource: PricingSource;
  rateStep: RateStep | null;
  /** The entry whose rates priced the call (`model_map_value` for the gateway's own). */
  priceEntry: string | null;
  /** The context tier whose rates applied (`above_200k_tokens`), if any. */
  contextTier: string | null;
  /** The service tier whose rates applied (`priority`, `flex`), if any. */
  serviceTier: string | null;
  /** The terms of the sum, for a call priced from rates; empty otherwise. */
  lines: PricedLine[];
  providerCostUsd: Decimal;
  chargedCredits: bigint;
  /** LiteLLM's response_cost as the decimal it stands for (see normalisedReportedCost). */
  reportedCostUsd: Decimal | null;
  /** Why a call was charged what it was, where that is not its rates (reported cost, on_divergence). */
  reason: string | null;
  divergence: Divergence | null;
};

export type PricingOutcome =
  | { priced: true; charge: Charge }
  | { priced: false; reason: "unpriced_model" | "price_divergence"; message: string; divergence?: Divergence };

/** Names tried at each rate step, in order, for `ops price`. */
export type RateLookup = {
  step: RateStep;
  entry: string;
  rates: ModelRates;
  /** Why these rates and not the ones LiteLLM logged, on the receipt. */
  reason?: string;
  /**
   * A rule that departs from what LiteLLM logged by design (a region profile's own entry, a
   * deployment's own prices): like an operator's price, a divergence is reported, never acted on.
   */
  deliberate?: true;
} | null;

// Calls LiteLLM prices per image, second, character, query or page: their cost is its own figure.
const NOT_PRICED_BY_TOKENS = new Set([
  "image_generation",
  "aimage_generation",
  "image_edit",
  "aimage_edit",
  "image_variation",
  "aimage_variation",
  "speech",
  "aspeech",
  "transcription",
  "atranscription",
  "rerank",
  "arerank",
  "moderation",
  "amoderation",
  "ocr",
  "aocr",
  "search",
  "asearch",
  "create_video",
  "acreate_video",
  "video_remix",
  "avideo_remix",
  "video_edit",
  "avideo_edit",
  "vector_store_search",
  "avector_store_search",
  "call_mcp_tool",
  "code_interpreter_tool",
  // Batches are billed at batch rates LiteLLM applies itself.
  "create_batch",
  "acreate_batch",
  "retrieve_batch",
  "aretrieve_batch",
]);

// A double's shortest text carries noise past the 15th significant digit (0.00022500000000000002).
const REPORTED_COST_DIGITS = 15;

/** LiteLLM's response_cost text as the decimal it stands for: rounded to 15 significant digits. */
export function normalisedReportedCost(text: string | null): Decimal | null {
  return text === null ? null : roundToSignificant(decimal(text), REPORTED_COST_DIGITS);
}

/**
 * LiteLLM's figure for the call before its own margin and provider discount: what the rates it
 * used come to, so what is compared with them and what is charged where LiteLLM's figure is
 * used. LiteLLM's margin is never billed: the price book's `markup` is the one markup.
 */
export function reportedCostBeforeMargin(event: UsageEvent): Decimal | null {
  return normalisedReportedCost(event.reportedOriginalCostUsd ?? event.reportedCostUsd);
}

/** The one function from a usage event to what it costs; pure, exact, never negative. */
export function priceUsageEvent(event: UsageEvent, book: PriceBook): PricingOutcome {
  const found = findRates(event, book);
  if (freeModelNames(event, found).some((name) => book.isFreeModel(name))) return unitemised(event, book, "free", ZERO, null);
  if (event.cacheHit) return unitemised(event, book, "cache_hit", ZERO, null);
  const reported = reportedCostBeforeMargin(event);
  const label = event.modelGroup ?? event.model ?? event.modelMapKey ?? "(no model)";

  const otherUnits =
    event.callType !== null && event.callType !== undefined && NOT_PRICED_BY_TOKENS.has(event.callType)
      ? `a ${event.callType} call is not priced by tokens`
      : event.gatewayPricesOtherUnits && gatewayRates(event.gatewayRates) === null
        ? `${label} is priced by LiteLLM per second, image, character or query, not by tokens`
        : null;
  if (otherUnits !== null) {
    // Never a silent zero: a call with usage that LiteLLM says cost nothing is not trusted as free.
    if (reported === null || (isZero(reported) && event.promptTokens + event.completionTokens > 0)) {
      return { priced: false, reason: "unpriced_model", message: `${otherUnits}, and LiteLLM reported ${reported === null ? "no" : "a zero"} cost` };
    }
    return unitemised(event, book, "reported_cost", reported, `${otherUnits}: LiteLLM's reported cost`);
  }

  const mode = pricingMode(event);
  if (mode !== null && found === null) {
    return {
      priced: false,
      reason: "unpriced_model",
      message: `${label}: ${mode.described} has no rates of its own${mode.prefix === null ? "" : ` (${mode.prefix}${event.model ?? event.modelMapKey ?? ""} is in neither the price book nor the cost map)`}, and the base rates would undercharge it`,
    };
  }
  const priced = found === null ? null : termsAt(event, found.rates);
  // One rule for every source of rates but the operator's own: a call with usage is never charged
  // 0 unless an operator said so. Rates that come to nothing are treated as no rates at all.
  const pricedCost = priced === null ? null : linesCost(priced.lines);
  const lookup = pricedCost !== null && (found!.step === "price_book" || !isZero(pricedCost) || !hasUsage(event)) ? found : null;

  if (lookup === null) {
    const unpriced = found === null ? `${label} is not in the price book` : `${label} has only rates of 0 (${found.entry})`;
    if (book.unknownModels === "quarantine") return { priced: false, reason: "unpriced_model", message: unpriced };
    if (reported === null) return { priced: false, reason: "unpriced_model", message: `${unpriced} and LiteLLM reported no cost` };
    if (isZero(reported) && hasUsage(event)) {
      return { priced: false, reason: "unpriced_model", message: `${unpriced} and LiteLLM reported 0 for a call with tokens` };
    }
    const why = found === null ? "has no rates anywhere" : `has only rates of 0 (${found.entry})`;
    return unitemised(event, book, "reported_cost", reported, `${label} ${why}: LiteLLM's reported cost`);
  }

  const { lines, contextTier, serviceTier } = priced!;
  const providerCostUsd = pricedCost!;
  const divergence = reported === null ? null : divergenceFrom(event, book, lookup, lines, reported);
  const charge: Charge = {
    pricingSource: "price_book",
    rateStep: lookup.step,
    priceEntry: lookup.entry,
    contextTier,
    serviceTier,
    lines,
    providerCostUsd,
    chargedCredits: creditsForCost(providerCostUsd, book),
    reportedCostUsd: normalisedReportedCost(event.reportedCostUsd),
    reason: lookup.reason ?? null,
    divergence,
  };
  // An operator's own price (a), and a rule that departs from LiteLLM's logged rates by design, are
  // deliberate: a divergence is reported, never acted on.
  if (divergence === null || book.onDivergence === "price_book" || lookup.step === "price_book" || lookup.deliberate) return { priced: true, charge };
  if (book.onDivergence === "quarantine") {
    return {
      priced: false,
      reason: "price_divergence",
      message: `${label}: ${divergence.gatewayCredits} credits at the gateway's rates, LiteLLM reported ${divergence.reportedCredits}`,
      divergence,
    };
  }
  const useReported = book.onDivergence === "reported" || compare(reported!, providerCostUsd) > 0;
  if (!useReported) return { priced: true, charge: { ...charge, reason: "on_divergence: higher (the rates' cost)" } };
  return {
    priced: true,
    charge: {
      ...charge,
      pricingSource: "reported_cost",
      providerCostUsd: reported!,
      chargedCredits: creditsForCost(reported!, book),
      reason: `on_divergence: ${book.onDivergence} (LiteLLM's reported cost)`,
    },
  };
}

/** The names the price book is searched by, at each step, in order. */
export function candidateNames(event: UsageEvent): Record<"price_book" | "cost_map", string[]> {
  return { price_book: priceBookNames(event), cost_map: costMapNames(event) };
}

function providerModel(event: UsageEvent): string | null {
  return event.provider && event.model && !event.model.startsWith(`${event.provider}/`) ? `${event.provider}/${event.model}` : null;
}

function priceBookNames(event: UsageEvent): string[] {
  return unique([event.modelGroup, event.model, event.modelMapKey, providerModel(event)].flatMap(withAndWithoutProvider));
}

// Never model_group: it is the operator's alias, which often reuses another model's name.
function costMapNames(event: UsageEvent): string[] {
  return unique([...[providerModel(event), event.modelMapKey, event.model].filter(isName), ...[event.modelMapKey, event.model].flatMap(withAndWithoutProvider)]);
}

/**
 * The rates for a call, in the contract's order: (a) the operator's own entries, (b) a Bedrock
 * region profile's own entry, (c) the rates LiteLLM used for it when they price tokens (only the
 * deployment's own where it set prices), (d) the bundled cost map by the model that served it.
 */
export function findRates(event: UsageEvent, book: PriceBook): RateLookup {
  const mode = pricingMode(event);
  // A mode's calls are priced only by the mode's own entry: the rates LiteLLM logs stay the base model's.
  if (mode !== null) return mode.prefix === null ? null : modeRates(event, book, mode.prefix);
  const operatorEntry = operatorRates(book, priceBookNames(event));
  if (operatorEntry !== null) return operatorEntry;
  const gateway = gatewayRates(event.gatewayRates);
  const published = gateway === null ? undefined : publishedMatch(event, book, gateway);
  // A profile's entry wins only over the base model's published rates, never over a deployment's own.
  if (gateway === null || published !== undefined) {
    const profile = regionProfileRates(event, book);
    if (profile !== null) return profile;
  }
  if (gateway !== null) {
    const own = published === undefined ? deploymentOwnRates(event, book, gateway) : null;
    if (own !== null) return { step: "gateway", entry: "model_map_value (the deployment's own prices)", rates: own, reason: DEPLOYMENT_PRICES_RULE, deliberate: true };
    return { step: "gateway", entry: "model_map_value", rates: gateway };
  }
  return costMapRates(book, costMapNames(event));
}

/**
 * The rates LiteLLM's own figure should agree with, for the divergence check: those it logged
 * (model_map_value), else the cost map's by the served model; for a fast or US-only call, the
 * mode's cost-map entry, which is what LiteLLM prices those from.
 */
function gatewayReference(event: UsageEvent, book: PriceBook): RateLookup {
  const mode = pricingMode(event);
  if (mode !== null) return mode.prefix === null ? null : costMapRates(book, costMapNames(event).map((name) => `${mode.prefix}${name}`));
  const gateway = gatewayRates(event.gatewayRates);
  return gateway === null ? costMapRates(book, costMapNames(event)) : { step: "gateway", entry: "model_map_value", rates: gateway };
}

function operatorRates(book: PriceBook, names: string[]): RateLookup {
  if (!book.hasOperatorEntries) return null;
  const entry = names.find((name) => book.models.get(name)?.origin === "price_book");
  return entry === undefined ? null : { step: "price_book", entry, rates: book.models.get(entry)! };
}

/**
 * The first of `names` in the cost map with a rate above 0: an entry whose rates are all 0 is
 * passed over (the map has such entries beside priced ones, as `gemini/gemini-2.0-flash-exp`).
 */
function costMapRates(book: PriceBook, names: string[]): RateLookup {
  for (const name of names) {
    const rates = book.models.get(name);
    if (rates?.origin === "litellm_cost_map" && Object.values(rates.rates).some(positive)) return { step: "cost_map", entry: name, rates };
  }
  return null;
}

function hasUsage(event: UsageEvent): boolean {
  return event.promptTokens + event.completionTokens + (event.webSearchRequests ?? 0) > 0;
}

/**
 * Anthropic's fast mode (`usage.speed: "fast"`) and US-only inference (`usage.inference_geo: "us"`)
 * cost more than the base model, and LiteLLM prices them from entries of their own (`fast/<model>`,
 * `us/<model>`, `fast/us/<model>`). A value not known to be the standard one has no prefix (null):
 * such a call is held rather than charged the base price.
 */
export function pricingMode(event: UsageEvent): { prefix: string | null; described: string } | null {
  const speed = event.speed === undefined || event.speed === "standard" ? "" : event.speed === "fast" ? "fast/" : null;
  const geo = event.inferenceGeo === undefined || STANDARD_GEOS.has(event.inferenceGeo) ? "" : event.inferenceGeo === "us" ? "us/" : null;
  if (speed === "" && geo === "") return null;
  const described = [
    speed === "" ? null : `speed "${event.speed}"`,
    geo === "" ? null : `inference_geo "${event.inferenceGeo}"`,
  ].filter((part) => part !== null).join(" and ");
  return { prefix: speed === null || geo === null ? null : `${speed}${geo}`, described: `a call with ${described}` };
}

// Anthropic answers "global" for its default routing; "not_available" where the model has no choice.
const STANDARD_GEOS = new Set(["global", "not_available"]);

function modeRates(event: UsageEvent, book: PriceBook, prefix: string): RateLookup {
  const prefixed = (names: string[]) => names.map((name) => `${prefix}${name}`);
  return operatorRates(book, prefixed(priceBookNames(event))) ?? costMapRates(book, prefixed(costMapNames(event)));
}

// A Bedrock cross-region inference profile: a geography before the vendor (`us.anthropic.claude-…`),
// after LiteLLM's own route prefixes.
const REGION_PROFILE = /^(?:bedrock\/)?(?:(?:invoke|converse)\/)?((?:us|us-gov|eu|apac|au|jp|ca|global)\.[a-z0-9-]+\..+)$/;

/**
 * A Bedrock call through a cross-region profile is priced by the profile's own entry: LiteLLM
 * logs (and looks up) the base model's rates for it, which are lower (10% for US profiles).
 */
function regionProfileRates(event: UsageEvent, book: PriceBook): RateLookup {
  const profile = [event.model, event.modelMapKey].map((name) => (name ? REGION_PROFILE.exec(name)?.[1] : undefined)).find(isName);
  if (profile === undefined) return null;
  const found = costMapRates(book, [`bedrock/${profile}`, profile]);
  return found === null ? null : { ...found, deliberate: true };
}

/**
 * The names `free_models` is matched against: the operator's entry the call is priced by, else
 * the model that served it. Never every name the payload carries, since a caller can add a name
 * (`model_map_key: "x:free"`) beside a priced model; never model_group alone, since an alias
 * says nothing of what served the call.
 */
function freeModelNames(event: UsageEvent, lookup: RateLookup): string[] {
  if (lookup?.step === "price_book") return [lookup.entry];
  return withAndWithoutProvider(event.model ?? event.modelMapKey);
}

/**
 * The check against LiteLLM: the exact cost at the gateway's own rates (b, else c), so an
 * operator's deliberate price (a) is never flagged, next to LiteLLM's figure.
 */
function divergenceFrom(event: UsageEvent, book: PriceBook, lookup: NonNullable<RateLookup>, lines: PricedLine[], reported: Decimal): Divergence | null {
  const reference = lookup.step === "price_book" || lookup.deliberate ? gatewayReference(event, book) : lookup;
  if (reference === null) return null;
  const referenceLines = reference === lookup ? lines : termsAt(event, reference.rates).lines;
  const gatewayCostUsd = linesCost(referenceLines);
  const difference = subtract(gatewayCostUsd, reported);
  const magnitude = difference.coefficient < 0n ? { ...difference, coefficient: -difference.coefficient } : difference;
  if (compare(multiply(multiply(magnitude, book.markup), book.creditsPerUsd), fromBigInt(1n)) < 0) return null;
  return {
    step: reference.step === "gateway" ? "gateway" : "cost_map",
    entry: reference.entry,
    lines: referenceLines,
    gatewayCostUsd,
    gatewayCredits: creditsForCost(gatewayCostUsd, book),
    reportedCredits: creditsForCost(reported, book),
  };
}

/**
 * The cost-map entry the logged rates are, by input and output price, among the entries of
 * `model_map_key` (its provider's first, as LiteLLM looks it up): undefined when none is.
 */
function publishedMatch(event: UsageEvent, book: PriceBook, gateway: ModelRates): ModelRates | undefined {
  return memoised(gateway, book, event.modelMapKey, event.provider, "published", () => {
    for (const name of publishedNames(event)) {
      const entry = book.models.get(name);
      if (entry?.origin === "litellm_cost_map" && sameRate(gateway, entry, "input_cost_per_token") && sameRate(gateway, entry, "output_cost_per_token")) return entry;
    }
    return undefined;
  });
}

function publishedNames(event: UsageEvent): string[] {
  const key = event.modelMapKey;
  if (key === null) return [];
  return unique([...(event.provider && !key.startsWith(`${event.provider}/`) ? [`${event.provider}/${key}`] : []), ...withAndWithoutProvider(key)]);
}

const DEPLOYMENT_PRICES_RULE = "the deployment sets its own input and output prices: terms it did not price are charged at those, never at the model's published rates";

/**
 * A Router deployment with prices of its own: LiteLLM logs its input and output prices mixed with
 * the published model's other rates (cache, tiers), which may be below the deployment's own. It
 * is told by that mix: input or output matching no published entry of `model_map_key`, beside
 * another token rate equal to the published entry's. (A cost map of another version than the
 * gateway's changes the whole entry, not input and output alone.) Of the logged rates only those
 * the deployment set (those that differ from the published entry) are kept; every other term
 * falls back to its input or output price (termsAt), and a service or context tier it did not
 * price is not applied. Null when the call shows no such mix.
 */
function deploymentOwnRates(event: UsageEvent, book: PriceBook, gateway: ModelRates): ModelRates | null {
  return memoised(gateway, book, event.modelMapKey, event.provider, "own", () => {
    const published = costMapRates(book, publishedNames(event));
    if (published === null) return null;
    const mixed = Object.keys(gateway.rates).some(
      (field) => field !== "input_cost_per_token" && field !== "output_cost_per_token" && !field.startsWith(SEARCH_RATE_FIELD) && sameRate(gateway, published.rates, field),
    );
    if (!mixed) return null;
    const rates: ModelRates["rates"] = {};
    for (const [field, rate] of Object.entries(gateway.rates)) {
      // Web search is priced per request, not per token: the published rate is the provider's.
      if (field === "input_cost_per_token" || field === "output_cost_per_token" || field.startsWith(SEARCH_RATE_FIELD) || !sameRate(gateway, published.rates, field)) rates[field] = rate;
    }
    return { origin: "gateway", rates };
  });
}

function sameRate(ours: ModelRates, theirs: ModelRates, field: string): boolean {
  const a = ours.rates[field];
  const b = theirs.rates[field];
  return a !== undefined && b !== undefined && compare(a, b) === 0;
}

/**
 * What a set of logged rates comes to against the book, for one `model_map_key` and provider.
 * Most calls of a batch share their deployment's rates (gatewayRates returns one object per set),
 * so this runs once per deployment and book, not per call.
 */
function memoised<T>(gateway: ModelRates, book: PriceBook, key: string | null, provider: string | null, what: string, compute: () => T): T {
  let byBook = rateMemo.get(gateway);
  if (byBook === undefined) rateMemo.set(gateway, (byBook = new WeakMap()));
  let known = byBook.get(book);
  if (known === undefined) byBook.set(book, (known = new Map()));
  const name = `${what}\u0000${provider ?? ""}\u0000${key ?? ""}`;
  if (known.has(name)) return known.get(name) as T;
  const value = compute();
  // Bounded: a caller cannot make the names of a deployment's calls vary without end.
  if (known.size >= 64) known.clear();
  known.set(name, value);
  return value;
}

const rateMemo = new WeakMap<ModelRates, WeakMap<PriceBook, Map<string, unknown>>>();

/** Whole credits for a USD cost: ceil(cost × markup × credits_per_usd). */
export function creditsForCost(costUsd: Decimal, book: PriceBook): bigint {
  return ceilToBigInt(multiply(multiply(costUsd, book.markup), book.creditsPerUsd));
}

/** A charge with no terms: free, a cache hit, or LiteLLM's reported cost. */
function unitemised(event: UsageEvent, book: PriceBook, pricingSource: PricingSource, cost: Decimal, reason: string | null): PricingOutcome {
  return {
    priced: true,
    charge: {
      pricingSource,
      rateStep: null,
      priceEntry: null,
      contextTier: null,
      serviceTier: null,
      lines: [],
      providerCostUsd: cost,
      chargedCredits: creditsForCost(cost, book),
      reportedCostUsd: normalisedReportedCost(event.reportedCostUsd),
      reason,
      divergence: null,
    },
  };
}

type AppliedRate = { field: string; rate: Decimal };

/**
 * Every term of the call at `entry`'s rates. A class without a rate of its own is priced at the
 * rate it is a kind of: cache reads and writes and audio input at the input rate, reasoning and
 * audio output at the output rate, 1-hour cache writes at the 5-minute write rate.
 */
function termsAt(event: UsageEvent, entry: ModelRates): { contextTier: string | null; serviceTier: string | null; lines: PricedLine[] } {
  const tiers = tieredRates(event, entry);
  const { rate } = tiers;
  const input = rate("input_cost_per_token") ?? { field: "input_cost_per_token", rate: ZERO };
  const output = rate("output_cost_per_token") ?? { field: "output_cost_per_token", rate: ZERO };
  const cacheWrite = rate("cache_creation_input_token_cost") ?? input;
  const line = (tokenClass: TokenClass, tokens: number, applied: AppliedRate): PricedLine => ({
    tokenClass,
    tokens,
    rateField: applied.field,
    rateUsd: applied.rate,
    costUsd: multiply(fromBigInt(BigInt(tokens)), applied.rate),
  });
  const cacheWrite1h = event.cacheWrite1hTokens ?? 0;
  const audioInput = event.audioInputTokens ?? 0;
  const audioOutput = event.audioOutputTokens ?? 0;
  const webSearches = event.webSearchRequests ?? 0;
  const lines = [
    line("uncached_prompt", event.promptTokens - event.cacheReadTokens - event.cacheWriteTokens - audioInput, input),
    line("cache_read", event.cacheReadTokens, rate("cache_read_input_token_cost") ?? input),
    line("cache_write", event.cacheWriteTokens - cacheWrite1h, cacheWrite),
    line("completion", event.completionTokens - event.reasoningTokens - audioOutput, output),
    line("reasoning", event.reasoningTokens, rate("output_cost_per_reasoning_token") ?? output),
  ];
  // Terms most calls do not have are listed only when they do.
  if (cacheWrite1h > 0) lines.push(line("cache_write_1h", cacheWrite1h, rate("cache_creation_input_token_cost_above_1hr") ?? cacheWrite));
  if (audioInput > 0) lines.push(line("audio_input", audioInput, rate("input_cost_per_audio_token") ?? input));
  if (audioOutput > 0) lines.push(line("audio_output", audioOutput, rate("output_cost_per_audio_token") ?? output));
  if (webSearches > 0) {
    const field = searchRateField(event.searchContextSize ?? "medium");
    const perSearch = entry.rates[field];
    lines.push(line("web_search", webSearches, perSearch ? { field, rate: perSearch } : { field: `${field} (not in the entry)`, rate: ZERO }));
  }
  // Read after the lines: a tier counts as applied once a rate of it priced a term.
  return { contextTier: tiers.contextTier, serviceTier: tiers.serviceTier, lines };
}

/**
 * The rate for a class: above a context threshold (`_above_200k_tokens`) where the entry prices
 * that tier, else at the service tier the call asked for (`_priority`, `_flex`) where the entry
 * has one, else the base rate.
 */
function tieredRates(event: UsageEvent, entry: ModelRates) {
  const context = contextTiersOf(entry).find(({ threshold }) => event.promptTokens > threshold);
  const service = SERVICE_TIERS.find((tier) => tier === event.serviceTier);
  const resolved = resolvedRates(entry, context?.suffix, service);
  let contextUsed = false;
  let serviceUsed = false;
  const rate = (field: TokenRateField): AppliedRate | undefined => {
    let found = resolved.get(field);
    if (found === undefined) resolved.set(field, (found = resolveRate(entry, context, service, field)));
    if (found === null) return undefined;
    contextUsed ||= found.kind === "context" || found.kind === "both";
    serviceUsed ||= found.kind === "service" || found.kind === "both";
    return found.applied;
  };
  return {
    rate,
    get contextTier() {
      return contextUsed ? context!.suffix.slice(1) : null;
    },
    get serviceTier() {
      return serviceUsed ? service! : null;
    },
  };
}

type ContextTier = (typeof CONTEXT_TIERS)[number];
type ResolvedRate = { applied: AppliedRate; kind: "context" | "service" | "both" | "base" } | null;

// Every call at an entry's rates, tiers and field resolves the same way: resolved once per
// entry (the price book's and the cached gateway rates are long-lived objects), not per call.
const contextTiersMemo = new WeakMap<ModelRates, ContextTier[]>();
const resolvedMemo = new WeakMap<ModelRates, Map<string, Map<TokenRateField, ResolvedRate>>>();

/** The context tiers the entry prices (a rate above 0 for input or output), in CONTEXT_TIERS' order. */
function contextTiersOf(entry: ModelRates): ContextTier[] {
  let tiers = contextTiersMemo.get(entry);
  if (tiers === undefined) {
    tiers = CONTEXT_TIERS.filter(
      ({ suffix }) => positive(entry.rates[`input_cost_per_token${suffix}`]) || positive(entry.rates[`output_cost_per_token${suffix}`]),
    );
    contextTiersMemo.set(entry, tiers);
  }
  return tiers;
}

function resolvedRates(entry: ModelRates, context: string | undefined, service: string | undefined): Map<TokenRateField, ResolvedRate> {
  let byTiers = resolvedMemo.get(entry);
  if (byTiers === undefined) resolvedMemo.set(entry, (byTiers = new Map()));
  const tiers = `${context ?? ""}|${service ?? ""}`;
  let resolved = byTiers.get(tiers);
  if (resolved === undefined) byTiers.set(tiers, (resolved = new Map()));
  return resolved;
}

function resolveRate(entry: ModelRates, context: ContextTier | undefined, service: string | undefined, field: TokenRateField): ResolvedRate {
  // As LiteLLM does: above a context threshold the context tier's rate wins over the service tier's.
  const candidates: Array<[string, "context" | "service" | "both" | "base"]> = [];
  if (context && service) candidates.push([`${field}${context.suffix}_${service}`, "both"]);
  if (context) candidates.push([`${field}${context.suffix}`, "context"]);
  if (service) candidates.push([`${field}_${service}`, "service"]);
  candidates.push([field, "base"]);
  for (const [name, kind] of candidates) {
    const found = entry.rates[name];
    // The cost map writes 0 for tiers a model does not have: a tier's 0 is not a price. Nor is a
    // context tier below the base rate (fast/ entries carry the standard model's long-context
    // rates): a longer prompt never makes a token cheaper. A service tier may be (flex).
    if (found === undefined || (kind !== "base" && !positive(found))) continue;
    if ((kind === "context" || kind === "both") && compare(found, entry.rates[kind === "both" ? `${field}_${service}` : field] ?? ZERO) < 0) continue;
    return { applied: { field: name, rate: found }, kind };
  }
  return null;
}

function positive(rate: Decimal | undefined): boolean {
  return rate !== undefined && rate.coefficient > 0n;
}

function linesCost(lines: PricedLine[]): Decimal {
  return sum(lines.map((line) => line.costUsd));
}

function withAndWithoutProvider(name: string | null | undefined): string[] {
  if (name === null || name === undefined) return [];
  const slash = name.indexOf("/");
  return slash > 0 && slash < name.length - 1 ? [name, name.slice(slash + 1)] : [name];
}

function isName(name: string | null | undefined): name is string {
  return name !== null && name !== undefined;
}

function unique(names: string[]): string[] {
  return [...new Set(names)];
}
