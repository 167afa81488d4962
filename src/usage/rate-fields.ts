// LiteLLM's rate vocabulary: what a usage event may carry as the gateway's rates, what a
// price book prices, and where a call's rates came from. Here, below pricing, so that the usage
// event and the metrics can name it without depending on the price book.

/**
 * The rates that price a class of tokens, by LiteLLM's field names. Each may also come in a
 * context tier (`_above_200k_tokens`), a service tier (`_priority`, `_flex`), or both.
 */
export const TOKEN_RATE_FIELDS = [
  "input_cost_per_token",
  "output_cost_per_token",
  "cache_read_input_token_cost",
  "cache_creation_input_token_cost",
  "cache_creation_input_token_cost_above_1hr",
  "output_cost_per_reasoning_token",
  "input_cost_per_audio_token",
  "output_cost_per_audio_token",
] as const;

export type TokenRateField = (typeof TOKEN_RATE_FIELDS)[number];

export const CONTEXT_TIERS = [
  { threshold: 200_000, suffix: "_above_200k_tokens" },
  { threshold: 128_000, suffix: "_above_128k_tokens" },
] as const;

export const SERVICE_TIERS = ["priority", "flex"] as const;

/** Web search is priced per request, by the search context size the call asked for. */
export const SEARCH_CONTEXT_SIZES = ["low", "medium", "high"] as const;
export type SearchContextSize = (typeof SEARCH_CONTEXT_SIZES)[number];
export const SEARCH_RATE_FIELD = "search_context_cost_per_query";
export const searchRateField = (size: SearchContextSize) => `${SEARCH_RATE_FIELD}.search_context_size_${size}`;

/** Every rate field a price book entry, the cost map or a payload's model_map_value may carry. */
export const RATE_FIELDS: readonly string[] = [
  ...TOKEN_RATE_FIELDS.flatMap((field) =>
    ["", ...CONTEXT_TIERS.map(({ suffix }) => suffix)].flatMap((context) =>
      ["", ...SERVICE_TIERS.map((tier) => `_${tier}`)].map((service) => `${field}${context}${service}`),
    ),
  ),
  ...SEARCH_CONTEXT_SIZES.map(searchRateField),
];

/**
 * Where the rates came from: (a) the operator's `models:`, (b) the rates LiteLLM used for the
 * call (its model_map_value), (c) the bundled LiteLLM cost map.
 */
export const RATE_STEPS = ["price_book", "gateway", "cost_map"] as const;
export type RateStep = (typeof RATE_STEPS)[number];

/** The steps whose cost is compared with LiteLLM's reported cost: the operator's own rates never are. */
export const DIVERGENCE_STEPS = ["gateway", "cost_map"] as const satisfies readonly RateStep[];
export type DivergenceStep = (typeof DIVERGENCE_STEPS)[number];

/** The price book's `on_divergence`: what is charged when the two differ by a credit or more. */
export const ON_DIVERGENCE = ["price_book", "reported", "higher", "quarantine"] as const;
export type OnDivergence = (typeof ON_DIVERGENCE)[number];
