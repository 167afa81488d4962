import { z } from "zod";
import { isStorableText, STORABLE_TEXT_RULE } from "../usage/storable-text.js";
import { NON_FINITE_LITERALS } from "./python-json.js";

/**
 * The parts of LiteLLM's StandardLoggingPayload that billing reads. Every other field is
 * ignored, and `messages`, `response` text and the rest of `model_parameters` are never kept.
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
export const MAX_REPORTED_COST_USD = 1_000_000;
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

/**
 * The rules some fields are read by instead of this schema (token-detail.ts), by name: any value
 * passes the schema, the rule reads what it can use and passes over the rest, and sanitise.ts
 * keeps in a quarantine copy what the rule reads.
 */
export type FieldReadRule = "rates" | "label" | "searchContextSize" | "cost";
type BillingFieldRead = { readBy: FieldReadRule } | { skippedUnlessObject: z.ZodObject };
/**
 * How a field is read other than by its schema alone; sanitise.ts keeps its copy the same way.
 * Not a z.registry(): its metadata type rewrites a zod schema held in it into a plain object type.
 */
export const billingFieldReads = new WeakMap<z.ZodType, BillingFieldRead>();

function readOtherwise(read: BillingFieldRead) {
  const schema = z.unknown().optional();
  billingFieldReads.set(schema, read);
  return schema;
}
/** A field read by a rule of its own; any value passes this schema. */
const readBy = (rule: FieldReadRule) => readOtherwise({ readBy: rule });
/** A field read with `schema` only when it is an object; any other value is passed over, not refused. */
const skippedUnlessObject = (schema: z.ZodObject) => readOtherwise({ skippedUnlessObject: schema });

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
  // Anthropic's fast mode and US-only inference, which have rates of their own.
  speed: readBy("label"),
  inference_geo: readBy("label"),
});
export type UsageObject = z.infer<typeof usageObjectSchema>;

// Account fields are checked when one is chosen (resolveBillingAccount): a field billing does
// not use must not cost the call its charge.
const accountField = () => z.unknown().optional();
const accountObject = z.looseObject({ billing_account_id: accountField() });

/**
 * Every field billing reads, declared once: this schema validates the item, and its shape
 * decides what `readBillingFields` hands it and what a quarantine copy keeps (sanitise.ts).
 * Its order is the copy's key order, which the quarantine fingerprint hashes: a new field goes
 * last, or the same refused item would be kept twice across an upgrade.
 */
export const litellmPayloadSchema = z.looseObject({
  // The key is chosen and checked by idempotencyKeyOf, whichever of the two it comes from.
  litellm_call_id: z.unknown().optional(),
  id: z.unknown().optional(),
  status: z.enum(["success", "failure"]).nullish(),
  cache_hit: z.boolean().nullish(),
  model: optionalText,
  model_group: optionalText,
  custom_llm_provider: optionalText,
  call_type: optionalText,
  prompt_tokens: tokenCount,
  completion_tokens: tokenCount,
  response_cost: number().min(0).max(MAX_REPORTED_COST_USD).nullish(),
  startTime: callTime,
  endTime: callTime,
  end_user: accountField(),
  model_map_information: z.looseObject({ model_map_key: optionalText, model_map_value: readBy("rates") }).nullish(),
  model_parameters: skippedUnlessObject(
    z.looseObject({
      service_tier: readBy("label"),
      web_search_options: skippedUnlessObject(z.looseObject({ search_context_size: readBy("searchContextSize") })),
    }),
  ),
  metadata: z
    .looseObject({
      user_api_key_team_id: accountField(),
      user_api_key_user_id: accountField(),
      user_api_key_org_id: accountField(),
      user_api_key_end_user_id: accountField(),
      // Only the first usage object that is an object is read (usageDetail).
      usage_object: skippedUnlessObject(usageObjectSchema),
      spend_logs_metadata: skippedUnlessObject(accountObject),
      user_api_key_auth_metadata: skippedUnlessObject(accountObject),
      // Read by principalsOf: a value that is not an id is passed over, not refused.
      user_api_key_hash: z.unknown().optional(),
    })
    .nullish(),
  hidden_params: z.looseObject({ usage_object: skippedUnlessObject(usageObjectSchema) }).nullish(),
  response: skippedUnlessObject(z.looseObject({ usage: skippedUnlessObject(usageObjectSchema) })),
  // LiteLLM's own margin and provider discount (since 1.81), to compare its cost before them.
  cost_breakdown: skippedUnlessObject(
    z.looseObject({ original_cost: readBy("cost"), discount_amount: readBy("cost"), margin_total_amount: readBy("cost") }),
  ),
});
export type LitellmPayload = z.infer<typeof litellmPayloadSchema>;

/** The schema inside optional and nullable wrappers. */
export function unwrapped(schema: z.ZodType): z.ZodType {
  return schema instanceof z.ZodOptional || schema instanceof z.ZodNullable ? unwrapped(schema.unwrap() as z.ZodType) : schema;
}

// For each field, the fields of its object that the schema reads, or null to hand it over whole.
const READ_FIELDS = Object.entries(litellmPayloadSchema.shape).map(([field, schema]) => {
  const inner = unwrapped(schema);
  return [field, inner instanceof z.ZodObject ? Object.keys(inner.shape) : null] as const;
});

/**
 * The fields the schema reads, as sent: validating this projection instead of the whole item
 * keeps zod from copying the dozens of fields of a payload (and of its metadata) it never looks at.
 */
export function readBillingFields(item: Record<string, unknown>): Record<string, unknown> {
  const read: Record<string, unknown> = {};
  for (const [field, nested] of READ_FIELDS) {
    if (!Object.hasOwn(item, field)) continue;
    const value = item[field];
    if (nested === null || !isRecord(value)) {
      read[field] = value;
      continue;
    }
    const kept: Record<string, unknown> = {};
    for (const key of nested) if (Object.hasOwn(value, key)) kept[key] = value[key];
    read[field] = kept;
  }
  return read;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
