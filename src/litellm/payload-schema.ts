import { z } from "zod";
import { isStorableText, STORABLE_TEXT_RULE } from "../usage/storable-text.js";
import { NON_FINITE_LITERALS } from "./python-json.js";

/**
 * The parts of LiteLLM's StandardLoggingPayload that billing reads. Every other field is
 * ignored, and `messages`, `response` text and `model_parameters` are never kept.
 */
// Model names are stored and indexed; see isStorableText.
const optionalText = z
  .string()
  .refine(isStorableText, STORABLE_TEXT_RULE)
  .nullish();
// A bad float reaches us as the string "NaN" or "Infinity" (see python-json.ts): say so.
const number = () =>
  z.number({
    error: (issue) =>
      typeof issue.input === "string" && NON_FINITE_LITERALS.has(issue.input)
        ? `${issue.input} is not a finite number`
        : undefined,
  });
// Token counts are stored as PostgreSQL integers.
const MAX_TOKENS = 2_147_483_647;
// No single call costs this much; a larger figure is a bad float, not a price.
const MAX_REPORTED_COST_USD = 1_000_000;
const tokenCount = number().int().min(0).max(MAX_TOKENS);
const optionalTokenCount = tokenCount.nullish();

// LiteLLM writes datetimes with str(datetime), which has a space and microseconds.
export const LITELLM_DATETIME = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]00:?00)?$/;

const callTime = z
  .union([
    // Epoch seconds up to 9999-12-31T23:59:59Z, the last instant an ISO-8601 year of four digits names.
    number().min(0).max(253_402_300_799),
    // Whether the date exists is checked once, when it is converted (normaliseCallbackItem).
    z.string().regex(LITELLM_DATETIME, "expected YYYY-MM-DD HH:MM:SS[.ffffff]"),
  ])
  .nullish();

// OpenAI's, Anthropic's and Gemini's usage, as LiteLLM logs each.
export const usageObjectSchema = z.looseObject({
  prompt_tokens: optionalTokenCount,
  completion_tokens: optionalTokenCount,
  cache_read_input_tokens: optionalTokenCount,
  cache_creation_input_tokens: optionalTokenCount,
  prompt_tokens_details: z
    .looseObject({
      cached_tokens: optionalTokenCount,
      cache_creation_tokens: optionalTokenCount,
      audio_tokens: optionalTokenCount,
      web_search_requests: optionalTokenCount,
      cache_creation_token_details: z.looseObject({ ephemeral_1h_input_tokens: optionalTokenCount }).nullish(),
    })
    .nullish(),
  completion_tokens_details: z.looseObject({ reasoning_tokens: optionalTokenCount, audio_tokens: optionalTokenCount }).nullish(),
  server_tool_use: z.looseObject({ web_search_requests: optionalTokenCount }).nullish(),
});
export type UsageObject = z.infer<typeof usageObjectSchema>;

// Account fields are checked when one is chosen (resolveBillingAccount): a field billing does
// not use must not cost the call its charge.
const accountMetadataSchema = z.looseObject({
  spend_logs_metadata: z.unknown().optional(),
  usage_object: z.unknown().optional(),
});

export const litellmPayloadSchema = z
  .looseObject({
    // The key is chosen and checked by idempotencyKeyOf, whichever of the two it comes from.
    litellm_call_id: z.unknown().optional(),
    id: z.unknown().optional(),
    status: z.enum(["success", "failure"]).nullish(),
    cache_hit: z.boolean().nullish(),
    model: optionalText,
    model_group: optionalText,
    // model_map_value (the rates LiteLLM used) is read leniently by gatewayRateDetail.
    model_map_information: z.looseObject({ model_map_key: optionalText }).nullish(),
    custom_llm_provider: optionalText,
    call_type: optionalText,
    prompt_tokens: tokenCount,
    completion_tokens: tokenCount,
    response_cost: number().min(0).max(MAX_REPORTED_COST_USD).nullish(),
    startTime: callTime,
    endTime: callTime,
    end_user: z.unknown().optional(),
    metadata: accountMetadataSchema.nullish(),
    hidden_params: z.looseObject({ usage_object: z.unknown().optional() }).nullish(),
    response: z.unknown().optional(),
  });
export type LitellmPayload = z.infer<typeof litellmPayloadSchema>;

export const ACCOUNT_METADATA_FIELDS = ["user_api_key_team_id", "user_api_key_user_id", "user_api_key_org_id", "user_api_key_end_user_id"];
export const TOP_LEVEL_FIELDS = [
  "litellm_call_id",
  "id",
  "status",
  "cache_hit",
  "model",
  "model_group",
  "custom_llm_provider",
  "call_type",
  "prompt_tokens",
  "completion_tokens",
  "response_cost",
  "startTime",
  "endTime",
  "end_user",
];

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
