import { RATE_FIELDS, SEARCH_CONTEXT_SIZES, type SearchContextSize, searchRateField } from "../usage/rate-fields.js";
import { isStorableText } from "../usage/storable-text.js";
import { usageObjectSchema, type UsageObject, type LitellmPayload, isRecord, MAX_REPORTED_COST_USD } from "./payload-schema.js";

export type TokenDetail = ReturnType<typeof tokenClasses>;
type UsageDetail = ({ success: true } & TokenDetail) | { success: false; path: PropertyKey[]; message: string };

export const NO_DETAIL: TokenDetail = {
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
  cacheWrite1hTokens: 0,
  reasoningTokens: 0,
  audioInputTokens: 0,
  audioOutputTokens: 0,
  webSearchRequests: 0,
  speed: null,
  inferenceGeo: null,
};

/** Cache, reasoning, audio and web search detail from the first usage object present, in LiteLLM's order. */
export function usageDetail(payload: LitellmPayload): UsageDetail {
  const candidates: Array<[PropertyKey[], unknown]> = [
    [["metadata", "usage_object"], payload.metadata?.usage_object],
    [["hidden_params", "usage_object"], payload.hidden_params?.usage_object],
    [["response", "usage"], isRecord(payload.response) ? payload.response.usage : undefined],
  ];
  const found = candidates.find(([, value]) => isRecord(value));
  if (!found) return { success: true, ...NO_DETAIL };
  const [path, value] = found;
  const parsed = usageObjectSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return { success: false, path: [...path, ...issue.path], message: issue.message };
  }
  return { success: true, ...tokenClasses(parsed.data) };
}

/** The one rule for which usage field counts which class of tokens. */
function tokenClasses(usage: UsageObject) {
  return {
    cacheReadTokens: usage.prompt_tokens_details?.cached_tokens ?? usage.cache_read_input_tokens ?? 0,
    cacheWriteTokens: usage.cache_creation_input_tokens ?? usage.prompt_tokens_details?.cache_creation_tokens ?? 0,
    cacheWrite1hTokens: usage.prompt_tokens_details?.cache_creation_token_details?.ephemeral_1h_input_tokens ?? 0,
    reasoningTokens: usage.completion_tokens_details?.reasoning_tokens ?? 0,
    audioInputTokens: usage.prompt_tokens_details?.audio_tokens ?? 0,
    audioOutputTokens: usage.completion_tokens_details?.audio_tokens ?? 0,
    // Anthropic's server tool use, else Gemini's grounding searches as LiteLLM logs them.
    webSearchRequests: usage.server_tool_use?.web_search_requests ?? usage.prompt_tokens_details?.web_search_requests ?? 0,
    speed: labelOf(usage.speed),
    inferenceGeo: labelOf(usage.inference_geo),
  };
}

/**
 * The rates LiteLLM used for this call (model_map_information.model_map_value), as the shortest
 * round-trip text of each double (the decimal LiteLLM wrote), and whether that entry prices a
 * unit other than tokens (seconds, images, characters, queries) above zero. A field that is not a
 * finite non-negative number is left out, not a reason to refuse. One walk over the entry's own
 * fields: this runs for every call.
 */
export function gatewayRateDetail(item: Record<string, unknown>, searched: boolean): { rates: Record<string, string> | null; pricesOtherUnits: boolean } {
  const information = item.model_map_information;
  const value = isRecord(information) ? information.model_map_value : undefined;
  if (!isRecord(value)) return { rates: null, pricesOtherUnits: false };
  const rates: Record<string, string> = {};
  let found = false;
  let pricesOtherUnits = false;
  const keep = (field: string, rate: unknown) => {
    if (typeof rate === "number" && Number.isFinite(rate) && rate >= 0) {
      rates[field] = String(rate);
      found = true;
    }
  };
  for (const field in value) {
    const rate = value[field];
    if (RATE_FIELD_SET.has(field)) keep(field, rate);
    else if (!pricesOtherUnits && typeof rate === "number" && rate > 0 && OTHER_UNIT_RATE.test(field)) pricesOtherUnits = true;
  }
  // Search rates only price a call that searched.
  const search = searched ? value.search_context_cost_per_query : undefined;
  if (isRecord(search)) for (const size of SEARCH_CONTEXT_SIZES) keep(searchRateField(size), search[`search_context_size_${size}`]);
  return { rates: found ? rates : null, pricesOtherUnits };
}

export const RATE_FIELD_SET: ReadonlySet<string> = new Set(RATE_FIELDS);
export const OTHER_UNIT_RATE = /_cost_per_(second|image|pixel|character|query|page|audio_per_second|video_per_second)/;

/** `model_parameters.service_tier` and the web search context size the call asked for, if any. */
export function requestedTiers(item: Record<string, unknown>): { serviceTier: string | null; searchContextSize: SearchContextSize | null } {
  const parameters = isRecord(item.model_parameters) ? item.model_parameters : {};
  const options = isRecord(parameters.web_search_options) ? parameters.web_search_options : {};
  return { serviceTier: labelOf(parameters.service_tier), searchContextSize: searchContextSizeOf(options.search_context_size) };
}

/** A label (a service tier, a speed, an inference geography) is read only when it is storable text. */
export function labelOf(value: unknown): string | null {
  return typeof value === "string" && isStorableText(value) ? value : null;
}

/** A figure of LiteLLM's cost breakdown is read only when it is a finite number from 0 to what any call could cost. */
export function costFigureOf(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= MAX_REPORTED_COST_USD ? value : null;
}

/**
 * LiteLLM's margin and provider discount (`cost_breakdown`) where either is above 0, with its cost
 * before them (`original_cost`, null where it did not say); null where `response_cost` is that cost.
 */
export function litellmAdjustments(item: Record<string, unknown>): { originalCost: number | null; margin: number; discount: number } | null {
  const breakdown = item.cost_breakdown;
  if (!isRecord(breakdown)) return null;
  const margin = costFigureOf(breakdown.margin_total_amount) ?? 0;
  const discount = costFigureOf(breakdown.discount_amount) ?? 0;
  return margin === 0 && discount === 0 ? null : { originalCost: costFigureOf(breakdown.original_cost), margin, discount };
}

/** A search context size is read only when it is one LiteLLM prices. */
export function searchContextSizeOf(value: unknown): SearchContextSize | null {
  return SEARCH_CONTEXT_SIZES.find((known) => known === value) ?? null;
}
