import { add, decimalFromNumber, subtract, toDecimalString } from "../pricing/decimal.js";
import type { BillingAccountSource } from "../platform/config.js";
import { type CallbackRefusalReason, type RejectedItem, tokenDetailIssues, type UsageEvent } from "../usage/usage-event.js";
import { canonicalId } from "../usage/storable-text.js";
import { OversizedItem, UnparseableItem } from "./item-markers.js";
import { LITELLM_DATETIME, litellmPayloadSchema, isRecord, readBillingFields } from "./payload-schema.js";
import { type TokenDetail, usageDetail, gatewayRateDetail, litellmAdjustments, requestedTiers } from "./token-detail.js";
import { principalsOf, resolveBillingAccount } from "./payer.js";
import { keptText, sanitiseCallbackItem } from "./sanitise.js";

// Where each total of the token-detail rule is in LiteLLM's payload.
const LITELLM_TOTAL_FIELD = {
  promptTokens: "prompt_tokens",
  cacheWriteTokens: "prompt_tokens_details.cache_creation_token_details",
  completionTokens: "completion_tokens",
} as const;

// A provider that returns no id makes LiteLLM write these.
const NOT_A_KEY = new Set(["", "none", "null"]);

/**
 * The raw key text as sent, or null when the item has none; `canonicalId` decides if it is
 * usable. `id` first: it is LiteLLM's request id (the provider's response id, else its call id),
 * the `request_id` of its spend log; a caller can set `litellm_call_id` through a header.
 */
export function idempotencyKeyOf(item: unknown): string | null {
  return cacheHitKey(item, payloadIdOf(item));
}

function payloadIdOf(item: unknown): string | null {
  if (!isRecord(item)) return null;
  for (const field of ["id", "litellm_call_id"]) {
    const value = item[field];
    if (typeof value === "string" && !NOT_A_KEY.has(value.trim().toLowerCase())) return value;
  }
  return null;
}

/**
 * A cache hit's callback carries the id of the response it reused, the original call's id; its
 * own key is that id with `_cache_hit` and its start time, as LiteLLM keys it in its spend log,
 * so that it never takes (or blocks) the original call's receipt.
 */
function cacheHitKey(item: unknown, key: string | null): string | null {
  if (key === null || !isRecord(item) || item.cache_hit !== true || key.includes("_cache_hit")) return key;
  const started = item.startTime;
  return `${key}_cache_hit${typeof started === "number" || typeof started === "string" ? String(started) : ""}`;
}

export type ReadOptions = {
  billingAccountFrom: readonly BillingAccountSource[];
};

export type NormalisedItem = { ok: true; event: UsageEvent } | { ok: false; rejected: RejectedItem & { reason: CallbackRefusalReason } };

/** Validates one callback item and reduces it to a usage event, or says why it cannot be. */
export function normaliseCallbackItem(item: unknown, options: ReadOptions): NormalisedItem {
  // An oversized item was never parsed: its key is among the fields read from its bytes.
  const rawKey = idempotencyKeyOf(item instanceof OversizedItem ? item.billingFields : item);
  const canonicalKey = rawKey === null ? null : canonicalId(rawKey);
  // An unusable key is kept (shortened) as sent, so the quarantine row shows what arrived.
  const idempotencyKey = canonicalKey?.ok ? canonicalKey.value : rawKey === null ? null : keptText(rawKey);
  const reject = (reason: CallbackRefusalReason, issues: unknown[]): NormalisedItem => ({
    ok: false,
    rejected: {
      reason,
      idempotencyKey,
      issues,
      item: sanitiseCallbackItem(item),
    },
  });
  if (item instanceof UnparseableItem) return reject("invalid_json", [{ message: "this item is not JSON" }]);
  if (item instanceof OversizedItem) return reject("item_too_large", [{ message: `the item ${item.why}; the rest of the batch was read` }]);
  if (!isRecord(item)) return reject("invalid_payload", [{ message: "each item must be a JSON object" }]);
  const parsed = litellmPayloadSchema.safeParse(readBillingFields(item));
  if (!parsed.success) {
    return reject(
      "invalid_payload",
      parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join("."), message: issue.message })),
    );
  }
  if (idempotencyKey === null) {
    return reject("no_idempotency_key", [{ path: "id", message: "no id or litellm_call_id to key on" }]);
  }
  if (!canonicalKey!.ok) {
    return reject("invalid_idempotency_key", [{ path: "id", message: `the key ${canonicalKey!.message}` }]);
  }
  const account = resolveBillingAccount(item, options.billingAccountFrom);
  if (!account.ok) return reject("invalid_billing_account", [{ path: account.field, message: account.message }]);
  const payload = parsed.data;
  const usage = usageDetail(payload);
  if (!usage.success) return reject("invalid_payload", [{ path: usage.path.map(String).join("."), message: usage.message }]);
  const detailIssues: Array<{ path: string; message: string }> = tokenDetailIssues({ ...usage, promptTokens: payload.prompt_tokens, completionTokens: payload.completion_tokens }).map(
    (issue) => ({ path: LITELLM_TOTAL_FIELD[issue.total], message: issue.message }),
  );
  const endTime = toIsoTime(payload.endTime);
  const startTime = toIsoTime(payload.startTime);
  for (const [path, raw, iso] of [["endTime", payload.endTime, endTime], ["startTime", payload.startTime, startTime]] as const) {
    if (typeof raw === "string" && iso === null) detailIssues.push({ path, message: "not a calendar date and time" });
  }
  if (detailIssues.length > 0) return reject("invalid_payload", detailIssues);
  return {
    ok: true,
    event: {
      idempotencyKey,
      billingAccountId: account.billingAccountId,
      ...(account.claimedBillingAccountId === null ? {} : { claimedBillingAccountId: account.claimedBillingAccountId }),
      status: payload.status ?? "success",
      cacheHit: payload.cache_hit === true,
      model: nonEmpty(payload.model),
      modelGroup: nonEmpty(payload.model_group),
      modelMapKey: nonEmpty(payload.model_map_information?.model_map_key),
      provider: nonEmpty(payload.custom_llm_provider),
      callType: nonEmpty(payload.call_type),
      promptTokens: payload.prompt_tokens,
      completionTokens: payload.completion_tokens,
      cacheReadTokens: usage.cacheReadTokens,
      cacheWriteTokens: usage.cacheWriteTokens,
      reasoningTokens: usage.reasoningTokens,
      reportedCostUsd: payload.response_cost === null || payload.response_cost === undefined ? null : costText(payload.response_cost),
      eventTime: endTime ?? startTime,
      // Always: receipts keep them, and usage is reported by key and team (see the performance guide for their cost).
      ...principalsOf(item),
      ...optionalEventFields(item, usage),
    },
  };
}

/**
 * The detail most calls do not have, only where a call has it: every event sits in Redis, is
 * written by the receiver and read by a worker, so a field of every event costs on every call.
 */
function optionalEventFields(item: Record<string, unknown>, usage: TokenDetail): Partial<UsageEvent> {
  const { rates, pricesOtherUnits } = gatewayRateDetail(item, usage.webSearchRequests > 0);
  const detail: Partial<UsageEvent> = { gatewayRates: rates };
  const { serviceTier, searchContextSize } = requestedTiers(item);
  if (serviceTier !== null) detail.serviceTier = serviceTier;
  if (searchContextSize !== null) detail.searchContextSize = searchContextSize;
  if (usage.cacheWrite1hTokens > 0) detail.cacheWrite1hTokens = usage.cacheWrite1hTokens;
  if (usage.audioInputTokens > 0) detail.audioInputTokens = usage.audioInputTokens;
  if (usage.audioOutputTokens > 0) detail.audioOutputTokens = usage.audioOutputTokens;
  if (usage.webSearchRequests > 0) detail.webSearchRequests = usage.webSearchRequests;
  if (pricesOtherUnits) detail.gatewayPricesOtherUnits = true;
  if (usage.speed !== null) detail.speed = usage.speed;
  if (usage.inferenceGeo !== null) detail.inferenceGeo = usage.inferenceGeo;
  const adjusted = litellmAdjustments(item);
  if (adjusted !== null) {
    const original = costBeforeMargin(adjusted, item.response_cost);
    if (original !== null) detail.reportedOriginalCostUsd = original;
    if (adjusted.margin > 0) detail.litellmMarginUsd = costText(adjusted.margin);
    if (adjusted.discount > 0) detail.litellmDiscountUsd = costText(adjusted.discount);
  }
  return detail;
}

/**
 * LiteLLM's cost before its margin and discount: `original_cost`, else worked back exactly from
 * `response_cost` (total = original − discount + margin), so a margin is never billed because
 * LiteLLM left out one figure. Null when neither can be had (no response_cost: nothing is billed
 * from LiteLLM's figure then).
 */
function costBeforeMargin(adjusted: NonNullable<ReturnType<typeof litellmAdjustments>>, responseCost: unknown): string | null {
  if (adjusted.originalCost !== null) return costText(adjusted.originalCost);
  if (typeof responseCost !== "number") return null;
  const worked = add(subtract(decimalFromNumber(responseCost), decimalFromNumber(adjusted.margin)), decimalFromNumber(adjusted.discount));
  return worked.coefficient < 0n ? "0" : toDecimalString(worked);
}

/** A cost LiteLLM wrote as a double, as the decimal text it stands for. */
function costText(usd: number): string {
  return toDecimalString(decimalFromNumber(usd));
}

function toIsoTime(value: number | string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return new Date(value * 1000).toISOString();
  const match = LITELLM_DATETIME.exec(value);
  // PostgreSQL has no year 0 in its timestamps.
  if (!match || match[1]!.startsWith("0000")) return null;
  const milliseconds = (match[3] ?? ".0").slice(1, 4).padEnd(3, "0");
  const iso = `${match[1]}T${match[2]}.${milliseconds}Z`;
  const time = new Date(iso);
  // Date rolls 2025-02-30 over into March; only a round trip proves the date exists.
  return !Number.isNaN(time.getTime()) && time.toISOString() === iso ? iso : null;
}

function nonEmpty(value: string | null | undefined): string | null {
  return value === null || value === undefined || value.trim() === "" ? null : value;
}
