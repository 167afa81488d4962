import { createHash } from "node:crypto";
import { dirname, resolve } from "node:path";
import { parseDocument, visit } from "yaml";
import { z } from "zod";
import { ON_DIVERGENCE, type OnDivergence, RATE_FIELDS, SEARCH_RATE_FIELD, TOKEN_RATE_FIELDS } from "../usage/rate-fields.js";
import { type CostMapIdentity, PRICE_BOOK_MAX_BYTES, readBoundedText, readCostMap } from "./cost-map.js";
import { type Decimal, decimal, decimalFromNumber, ZERO } from "./decimal.js";
import { PriceBookError } from "./price-book-error.js";

export { PriceBookError } from "./price-book-error.js";
export type { CostMapIdentity } from "./cost-map.js";

/** USD per token for one model, by LiteLLM's field names; absent fields are undefined. */
export type ModelRates = {
  /** Where the entry came from: the operator's `models:`, LiteLLM's cost map, or the call itself. */
  origin: "price_book" | "litellm_cost_map" | "gateway";
  rates: Partial<Record<string, Decimal>>;
};

export type PriceBook = {
  creditsPerUsd: Decimal;
  markup: Decimal;
  unknownModels: "reported_cost" | "quarantine";
  /** What is charged when the exact cost at the gateway's rates and LiteLLM's own figure differ. */
  onDivergence: OnDivergence;
  freeModelPatterns: string[];
  isFreeModel: (name: string) => boolean;
  models: ReadonlyMap<string, ModelRates>;
  /** Whether `models:` has any entry: most books have none, and step (a) is then skipped. */
  hasOperatorEntries: boolean;
  /** sha256 of the price book and cost map texts, kept on every receipt it priced. */
  hash: string;
  /** The LiteLLM cost map the book names, or null when it names none. */
  costMap: CostMapIdentity | null;
};

// Numbers arrive as the text they were written in (see parseYamlKeepingDecimalText).
const decimalText = z.union([z.number(), z.string()]);

const priceBookFileSchema = z.object({
  credits_per_usd: decimalText,
  markup: decimalText.default(1),
  unknown_models: z.enum(["reported_cost", "quarantine"]).default("reported_cost"),
  on_divergence: z.enum(ON_DIVERGENCE).default("price_book"),
  free_models: z.array(z.string().min(1)).default([]),
  // A path, or the path with the map's identity, which its JSON does not hold.
  litellm_cost_map: z
    .union([
      z.string().min(1),
      z.strictObject({
        path: z.string().min(1),
        // Shown in a metric label and on terminals: printable ASCII, bounded.
        version: z.string().regex(/^[\x20-\x7e]{1,100}$/, "printable ASCII, 1 to 100 characters").optional(),
        date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "a date, YYYY-MM-DD").refine(isCalendarDate, "not a calendar date").optional(),
      }),
    ])
    .nullish(),
  models: z.record(z.string(), z.record(z.string(), z.unknown()).nullable()).nullish(),
});

export function loadPriceBook(path: string): PriceBook {
  const text = readBoundedText(path, "price book", PRICE_BOOK_MAX_BYTES);
  return parsePriceBook(text, { baseDirectory: dirname(resolve(path)) });
}

/** Builds a price book from its YAML text; a cost map path is read relative to `baseDirectory`. */
export function parsePriceBook(text: string, options: { baseDirectory: string }): PriceBook {
  const document = parseYamlKeepingDecimalText(text);
  const parsed = priceBookFileSchema.safeParse(document);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new PriceBookError(`price book field ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  const file = parsed.data;
  const hash = createHash("sha256").update(text);

  const models = new Map<string, ModelRates>();
  let costMap: CostMapIdentity | null = null;
  if (file.litellm_cost_map) {
    const stated = typeof file.litellm_cost_map === "string" ? { path: file.litellm_cost_map } : file.litellm_cost_map;
    const map = readCostMap(resolve(options.baseDirectory, stated.path), { version: stated.version ?? null, date: stated.date ?? null });
    hash.update(map.text);
    costMap = map.identity;
    for (const [name, entry] of map.entries) {
      let rates: ModelRates["rates"] | null;
      try {
        rates = readRates(name, entry, { requireInputAndOutput: false });
      } catch (error) {
        throw error instanceof PriceBookError ? new PriceBookError(`LiteLLM cost map ${map.identity.path}: ${error.message}`) : error;
      }
      if (rates) models.set(name, { origin: "litellm_cost_map", rates });
    }
    // A map with entries but no token rates (a wrong file, a format LiteLLM changed) prices nothing.
    if (![...models.values()].some((model) => model.origin === "litellm_cost_map")) {
      throw new PriceBookError(`LiteLLM cost map ${map.identity.path} has no entry priced per token`);
    }
  }
  // The operator's entry replaces the cost map's entry whole: what is written is what is charged.
  for (const [name, entry] of Object.entries(file.models ?? {})) {
    const rates = readRates(name, entry ?? {}, { requireInputAndOutput: true });
    models.set(name, { origin: "price_book", rates: rates! });
  }

  const creditsPerUsd = readDecimal("credits_per_usd", file.credits_per_usd);
  if (creditsPerUsd.coefficient <= 0n) throw new PriceBookError("price book field credits_per_usd: must be above 0");
  const markup = readDecimal("markup", file.markup);
  if (markup.coefficient < 0n) throw new PriceBookError("price book field markup: must not be negative");

  const freePatterns = file.free_models.map(globToRegExp);
  return {
    creditsPerUsd,
    markup,
    unknownModels: file.unknown_models,
    onDivergence: file.on_divergence,
    freeModelPatterns: file.free_models,
    isFreeModel: (name) => freePatterns.some((pattern) => pattern.test(name)),
    models,
    hasOperatorEntries: Object.keys(file.models ?? {}).length > 0,
    hash: hash.digest("hex"),
    costMap,
  };
}

function isCalendarDate(text: string): boolean {
  const date = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(date.getTime()) && date.toISOString().startsWith(text);
}

/**
 * YAML numbers as the exact text the operator wrote ("2.50000000000000000001e-6" stays that),
 * never rounded through a binary float on the way to a rate.
 */
function parseYamlKeepingDecimalText(text: string): unknown {
  const document = parseDocument(text);
  if (document.errors.length > 0) {
    throw new PriceBookError(`price book is not valid YAML: ${document.errors[0]!.message}`);
  }
  visit(document, {
    Scalar(_key, node) {
      if (typeof node.value === "number" && node.source !== undefined) node.value = node.source;
    },
  });
  return document.toJS();
}

function readRates(
  model: string,
  entry: Record<string, unknown>,
  options: { requireInputAndOutput: boolean },
): ModelRates["rates"] | null {
  const rates: ModelRates["rates"] = {};
  for (const [field, value] of rateValues(entry)) {
    if (typeof value !== "number" && typeof value !== "string") {
      throw new PriceBookError(`model ${model} field ${field}: expected a number, got ${typeof value}`);
    }
    const rate = readDecimal(`models.${model}.${field}`, value);
    if (rate.coefficient < 0n) throw new PriceBookError(`model ${model} field ${field}: must not be negative`);
    rates[field] = rate;
  }
  const hasInput = rates.input_cost_per_token !== undefined;
  const hasOutput = rates.output_cost_per_token !== undefined;
  if (options.requireInputAndOutput) {
    if (!hasInput) throw new PriceBookError(`model ${model} field input_cost_per_token: is required`);
    if (!hasOutput) throw new PriceBookError(`model ${model} field output_cost_per_token: is required`);
  }
  // Cost map entries priced per image, second or character cannot price tokens.
  if (!hasInput && !hasOutput) return null;
  rates.input_cost_per_token ??= ZERO;
  rates.output_cost_per_token ??= ZERO;
  return rates;
}

/**
 * The rate fields an entry sets (null and absent fields are unset), search context costs
 * flattened to `search_context_cost_per_query.search_context_size_<size>`.
 */
export function rateValues(entry: Record<string, unknown>): Array<[string, unknown]> {
  const search = entry[SEARCH_RATE_FIELD];
  const searchBySize = typeof search === "object" && search !== null ? (search as Record<string, unknown>) : {};
  return RATE_FIELDS.flatMap((field): Array<[string, unknown]> => {
    const value = field.startsWith(`${SEARCH_RATE_FIELD}.`) ? searchBySize[field.slice(SEARCH_RATE_FIELD.length + 1)] : entry[field];
    return value === undefined || value === null ? [] : [[field, value]];
  });
}

/**
 * Rates LiteLLM used for a call (decimal text, from its model_map_value), when they can price
 * tokens: at least one token rate above zero. All zero is not trusted as free.
 */
export function gatewayRates(values: Readonly<Record<string, string>> | null | undefined): ModelRates | null {
  if (!values) return null;
  // Most calls of a batch share their model's rates: parse each set once.
  let key = "";
  for (const field in values) key += `${field}=${values[field]};`;
  const known = gatewayRatesCache.get(key);
  if (known !== undefined) return known;
  const rates = parseGatewayRates(values);
  if (gatewayRatesCache.size >= GATEWAY_RATES_CACHED) gatewayRatesCache.delete(gatewayRatesCache.keys().next().value!);
  gatewayRatesCache.set(key, rates);
  return rates;
}

const GATEWAY_RATES_CACHED = 1_000;
const gatewayRatesCache = new Map<string, ModelRates | null>();

function parseGatewayRates(values: Readonly<Record<string, string>>): ModelRates | null {
  const rates: ModelRates["rates"] = {};
  for (const [field, text] of Object.entries(values)) {
    if (!RATE_FIELDS.includes(field)) continue;
    const rate = decimal(text);
    if (rate.coefficient >= 0n) rates[field] = rate;
  }
  const pricesTokens = TOKEN_RATE_FIELDS.some((field) => (rates[field]?.coefficient ?? 0n) > 0n);
  if (!pricesTokens) return null;
  rates.input_cost_per_token ??= ZERO;
  rates.output_cost_per_token ??= ZERO;
  return { origin: "gateway", rates };
}

function readDecimal(field: string, value: number | string): Decimal {
  try {
    return typeof value === "number" ? decimalFromNumber(value) : decimal(value);
  } catch {
    throw new PriceBookError(`price book field ${field}: ${JSON.stringify(value)} is not a finite decimal number`);
  }
}

/** `*` matches any run of characters (including `/` and `:`), `?` any one character. */
function globToRegExp(glob: string): RegExp {
  const source = glob
    .split("")
    .map((char) => (char === "*" ? ".*" : char === "?" ? "." : char.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
    .join("");
  return new RegExp(`^${source}$`);
}
