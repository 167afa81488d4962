import { z } from "zod";
import { RATE_FIELDS, SEARCH_CONTEXT_SIZES } from "./rate-fields.js";
import { isStorableText, STORABLE_TEXT_RULE } from "./storable-text.js";

const DECIMAL_TEXT = /^\d+(\.\d+)?$/;
// A double's shortest round-trip text, exponent and all (1.25e-7), as JavaScript prints it.
const RATE_TEXT = /^\d+(\.\d+)?(e[+-]?\d+)?$/;

const tokenCount = z.number().int().min(0);

const storableText = z.string().refine(isStorableText, STORABLE_TEXT_RULE);

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
  reportedCostUsd: z.string().regex(DECIMAL_TEXT, "a non-negative decimal without exponent").nullable(),
  /** ISO-8601, UTC. */
  eventTime: z.string().nullable(),
  })
  // Pricing subtracts the detail classes from their totals; a job must never make them negative.
  .refine((event) => event.cacheReadTokens + event.cacheWriteTokens + (event.audioInputTokens ?? 0) <= event.promptTokens, {
    message: "cached reads, cache writes and audio input exceed promptTokens",
    path: ["promptTokens"],
  })
  .refine((event) => (event.cacheWrite1hTokens ?? 0) <= event.cacheWriteTokens, {
    message: "1-hour cache writes exceed cacheWriteTokens",
    path: ["cacheWrite1hTokens"],
  })
  .refine((event) => event.reasoningTokens + (event.audioOutputTokens ?? 0) <= event.completionTokens, {
    message: "reasoning and audio output tokens exceed completionTokens",
    path: ["completionTokens"],
  });
export type UsageEvent = z.infer<typeof usageEventSchema>;

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

/** An item the receiver refused, already stripped of prompt and response content. */
export const rejectedItemSchema = z.object({
  reason: z.string(),
  idempotencyKey: z.string().nullable(),
  issues: z.array(z.unknown()),
  item: z.unknown(),
});
export type RejectedItem = z.infer<typeof rejectedItemSchema>;
