import { z } from "zod";
import { RATE_FIELDS, SEARCH_CONTEXT_SIZES } from "./rate-fields.js";
import { isStorableText, STORABLE_TEXT_RULE } from "./storable-text.js";

const DECIMAL_TEXT = /^\d+(\.\d+)?$/;
// A double's shortest round-trip text, exponent and all (1.25e-7), as JavaScript prints it.
const RATE_TEXT = /^\d+(\.\d+)?(e[+-]?\d+)?$/;

const tokenCount = z.number().int().min(0);
const decimalText = z.string().regex(DECIMAL_TEXT, "a non-negative decimal without exponent");

const storableText = z.string().refine(isStorableText, STORABLE_TEXT_RULE);

// LiteLLM's own test of what it accepts as a key's hash (proxy/utils.py is_valid_api_key): its
// hash_token is SHA-256 in hex. Anything else, its /key/block answers 400 "Invalid key format.".
const LITELLM_KEY_HASH = /^[0-9a-fA-F]{64}$/;

/**
 * Whether `text` can be the hash of a LiteLLM key: only such a key is ever recorded as having
 * paid, so enforcement never sends LiteLLM a key it must refuse (a custom-auth or JWT caller,
 * whose `user_api_key_hash` is no hash, is left to its team).
 */
export function isLitellmKeyHash(text: string): boolean {
  return LITELLM_KEY_HASH.test(text);
}

/**
 * A LiteLLM call reduced to what billing reads. Never prompt or response text: job data sits
 * in Redis in clear. Fields added later must be optional so queued jobs still parse.
 */
export const usageEventSchema = z
  .object({
  idempotencyKey: storableText.min(1),
  billingAccountId: storableText.min(1).nullable(),
  /** The account the caller named (spend_logs_metadata) when a trusted source paid instead. */
  claimedBillingAccountId: storableText.min(1).nullish(),
  status: z.enum(["success", "failure"]),
  cacheHit: z.boolean(),
  model: storableText.nullable(),
  modelGroup: storableText.nullable(),
  modelMapKey: storableText.nullable(),
  provider: storableText.nullable(),
  callType: storableText.nullish(),
  /** `model_parameters.service_tier`: `priority` and `flex` have rates of their own. */
  serviceTier: storableText.nullish(),
  searchContextSize: z.enum(SEARCH_CONTEXT_SIZES).nullish(),
  /**
   * Set by the gateway backfill when LiteLLM's spend log kept neither the request nor a tier
   * for the call (its store_prompts_in_spend_logs off): it is priced at the standard tier and
   * a medium web search context, and its receipt says so.
   */
  tierUnknown: z.literal(true).optional(),
  promptTokens: tokenCount,
  completionTokens: tokenCount,
  cacheReadTokens: tokenCount,
  cacheWriteTokens: tokenCount,
  /** Of cacheWriteTokens, those written for an hour (Anthropic's ephemeral_1h). */
  cacheWrite1hTokens: tokenCount.optional(),
  reasoningTokens: tokenCount,
  /** Of promptTokens and completionTokens, the audio ones. */
  audioInputTokens: tokenCount.optional(),
  audioOutputTokens: tokenCount.optional(),
  webSearchRequests: tokenCount.optional(),
  /** LiteLLM's entry for the call prices other units (seconds, images, characters, queries). */
  gatewayPricesOtherUnits: z.boolean().optional(),
  /** The rates LiteLLM used for this call (its model_map_value), as decimal text by field. */
  gatewayRates: z
    .record(z.string().refine((field) => RATE_FIELDS.includes(field), "not a rate field"), z.string().regex(RATE_TEXT))
    .nullish(),
  /** LiteLLM's own `response_cost`, as plain non-negative decimal text. */
  reportedCostUsd: decimalText.nullable(),
  /**
   * LiteLLM's cost before its own margin and provider discount (`cost_breakdown.original_cost`),
   * only where a margin or discount made `response_cost` differ from it.
   */
  reportedOriginalCostUsd: decimalText.optional(),
  /** The margin and discount LiteLLM applied (`cost_breakdown`), where above zero: shown, never billed. */
  litellmMarginUsd: decimalText.optional(),
  litellmDiscountUsd: decimalText.optional(),
  /** Anthropic's `usage.speed` and `usage.inference_geo`, where the provider set them: modes with rates of their own. */
  speed: storableText.optional(),
  inferenceGeo: storableText.optional(),
  /** ISO-8601, UTC. */
  eventTime: z.string().nullable(),
  /** Who LiteLLM authenticated for the call, as it fills them from the key: what enforcement may block. */
  keyHash: storableText.min(1).optional(),
  teamId: storableText.min(1).optional(),
  })
  // Pricing subtracts the detail classes from their totals; a job must never make them negative.
  .superRefine((event, context) => {
    for (const issue of tokenDetailIssues(event)) context.addIssue({ code: "custom", message: issue.message, path: [issue.total] });
  });
export type UsageEvent = z.infer<typeof usageEventSchema>;

type TokenCounts = Pick<UsageEvent, "promptTokens" | "completionTokens" | "cacheReadTokens" | "cacheWriteTokens" | "reasoningTokens"> &
  Partial<Pick<UsageEvent, "cacheWrite1hTokens" | "audioInputTokens" | "audioOutputTokens">>;

/**
 * The one rule between a call's token totals and their detail: the classes pricing takes out
 * of a total (cached reads, cache writes and audio input of the prompt; reasoning and audio
 * output of the completion; 1-hour writes of the cache writes) never exceed it. The LiteLLM
 * reader refuses such an item at the door; a queued event that breaks it is refused again.
 */
export function tokenDetailIssues(tokens: TokenCounts): Array<{ total: "promptTokens" | "cacheWriteTokens" | "completionTokens"; message: string }> {
  const issues: Array<{ total: "promptTokens" | "cacheWriteTokens" | "completionTokens"; message: string }> = [];
  if (tokens.cacheReadTokens + tokens.cacheWriteTokens + (tokens.audioInputTokens ?? 0) > tokens.promptTokens) {
    issues.push({ total: "promptTokens", message: "cached reads, cache writes and audio input exceed the prompt tokens" });
  }
  if ((tokens.cacheWrite1hTokens ?? 0) > tokens.cacheWriteTokens) {
    issues.push({ total: "cacheWriteTokens", message: "1-hour cache writes exceed the cache writes" });
  }
  if (tokens.reasoningTokens + (tokens.audioOutputTokens ?? 0) > tokens.completionTokens) {
    issues.push({ total: "completionTokens", message: "reasoning and audio output tokens exceed the completion tokens" });
  }
  return issues;
}

export function parseUsageEvents(events: unknown[]): { valid: UsageEvent[]; invalid: Array<{ item: unknown; issues: string[] }> } {
  const valid: UsageEvent[] = [];
  const invalid: Array<{ item: unknown; issues: string[] }> = [];
  for (const item of events) {
    const parsed = usageEventSchema.safeParse(item);
    if (parsed.success) valid.push(parsed.data);
    else invalid.push({ item, issues: parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`) });
  }
  return { valid, invalid };
}

/**
 * Why the receiver refuses a callback item at the door, each with its meaning: the item is kept
 * in quarantine (stage receiver) with this reason and counted in
 * spend_ingest_events_rejected_total{reason}. Here, below the LiteLLM reader that decides them,
 * so that the metrics can start every reason's series at 0. Each is a quarantine reason too,
 * where what to do about it is (books/quarantine-reasons.ts).
 */
export const CALLBACK_REFUSAL_CATALOG = {
  invalid_json: "the item is not JSON",
  item_too_large: "the item holds too many JSON values or nests too deep to be read; it was never parsed",
  invalid_payload: "the item does not match LiteLLM's payload (its issues say where)",
  no_idempotency_key: "neither id nor litellm_call_id is set",
  invalid_idempotency_key: "the key is not an id: blank, too long, or holding a control character or a lone surrogate",
  invalid_billing_account: "the account field chosen is not an id",
} as const satisfies Record<string, string>;

export type CallbackRefusalReason = keyof typeof CALLBACK_REFUSAL_CATALOG;

export const CALLBACK_REFUSAL_REASONS = Object.keys(CALLBACK_REFUSAL_CATALOG) as CallbackRefusalReason[];

/**
 * An item the receiver refused, already stripped of prompt and response content. Its reason is
 * a callback refusal's, or one of the gateway backfill's (gateway/reconcile-spend-log.ts).
 */
export const rejectedItemSchema = z.object({
  reason: z.string(),
  idempotencyKey: z.string().nullable(),
  issues: z.array(z.unknown()),
  item: z.unknown(),
});
export type RejectedItem = z.infer<typeof rejectedItemSchema>;
