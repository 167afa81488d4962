import { createHash } from "node:crypto";
import { z } from "zod";
import { decimalFromNumber, toDecimalString } from "../pricing/decimal.js";
import { RATE_FIELDS, SEARCH_CONTEXT_SIZES, type SearchContextSize, searchRateField } from "../usage/rate-fields.js";
import { type BillingAccountSource, CLIENT_SETTABLE_SOURCES } from "../platform/config.js";
import type { RejectedItem, UsageEvent } from "../usage/usage-event.js";
import { canonicalId, isStorableText, STORABLE_TEXT_RULE } from "../usage/storable-text.js";
import { UnparseableLine } from "./callback-body.js";
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
const LITELLM_DATETIME = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]00:?00)?$/;

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
type UsageObject = z.infer<typeof usageObjectSchema>;

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

type TokenDetail = ReturnType<typeof tokenClasses>;
type UsageDetail = ({ success: true } & TokenDetail) | { success: false; path: PropertyKey[]; message: string };

const NO_DETAIL: TokenDetail = {
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
  cacheWrite1hTokens: 0,
  reasoningTokens: 0,
  audioInputTokens: 0,
  audioOutputTokens: 0,
  webSearchRequests: 0,
};

/** Cache, reasoning, audio and web search detail from the first usage object present, in LiteLLM's order. */
function usageDetail(payload: LitellmPayload): UsageDetail {
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
  };
}

/**
 * The rates LiteLLM used for this call (model_map_information.model_map_value), as the shortest
 * round-trip text of each double (the decimal LiteLLM wrote), and whether that entry prices a
 * unit other than tokens (seconds, images, characters, queries) above zero. A field that is not a
 * finite non-negative number is left out, not a reason to refuse. One walk over the entry's own
 * fields: this runs for every call.
 */
function gatewayRateDetail(item: Record<string, unknown>, searched: boolean): { rates: Record<string, string> | null; pricesOtherUnits: boolean } {
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

const RATE_FIELD_SET: ReadonlySet<string> = new Set(RATE_FIELDS);
const OTHER_UNIT_RATE = /_cost_per_(second|image|pixel|character|query|page|audio_per_second|video_per_second)/;

/** `model_parameters.service_tier` and the web search context size the call asked for, if any. */
function requestedTiers(item: Record<string, unknown>): { serviceTier: string | null; searchContextSize: SearchContextSize | null } {
  const parameters = isRecord(item.model_parameters) ? item.model_parameters : {};
  const serviceTier = typeof parameters.service_tier === "string" && isStorableText(parameters.service_tier) ? parameters.service_tier : null;
  const options = isRecord(parameters.web_search_options) ? parameters.web_search_options : {};
  const size = SEARCH_CONTEXT_SIZES.find((known) => known === options.search_context_size) ?? null;
  return { serviceTier, searchContextSize: size };
}

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

/** Where each account source is read, in the payload LiteLLM sends. */
const ACCOUNT_SOURCE_FIELDS: Record<BillingAccountSource, ReadonlyArray<readonly string[]>> = {
  key_metadata: [["metadata", "user_api_key_auth_metadata", "billing_account_id"]],
  team: [["metadata", "user_api_key_team_id"]],
  user: [["metadata", "user_api_key_user_id"]],
  org: [["metadata", "user_api_key_org_id"]],
  spend_logs_metadata: [["metadata", "spend_logs_metadata", "billing_account_id"]],
  end_user: [["metadata", "user_api_key_end_user_id"], ["end_user"]],
};

export type ResolvedAccount =
  | {
      ok: true;
      billingAccountId: string | null;
      /** The account a caller named in spend_logs_metadata when a trusted source chose another one. */
      claimedBillingAccountId: string | null;
    }
  | { ok: false; field: string; message: string };

type AccountFieldValue = { field: string; text: string | null; problem: string | null };

/** The first non-blank value among `paths`, as canonical account id text or a problem. */
function accountFieldValue(payload: Record<string, unknown>, paths: ReadonlyArray<readonly string[]>): AccountFieldValue | null {
  for (const path of paths) {
    let value: unknown = payload;
    for (const step of path) value = isRecord(value) ? value[step] : undefined;
    // A blank value is no value: LiteLLM writes "" for fields the call did not set.
    if (value === null || value === undefined || (typeof value === "string" && value.trim() === "")) continue;
    const field = path.join(".");
    const text = typeof value === "string" ? value : Number.isSafeInteger(value) ? String(value) : null;
    if (text === null) return { field, text: null, problem: `expected text or a whole number, got ${typeof value}` };
    const canonical = canonicalId(text);
    return canonical.ok ? { field, text: canonical.value, problem: null } : { field, text: null, problem: canonical.message };
  }
  return null;
}

/**
 * The paying account: the first source in `sources` that has a value. A chosen value that
 * cannot be an account id is an error rather than a reason to bill the next source's account.
 * When a trusted source pays while the caller's spend_logs_metadata names another account,
 * that claim is returned too, so the receipt can say it was overruled.
 */
export function resolveBillingAccount(payload: Record<string, unknown>, sources: readonly BillingAccountSource[]): ResolvedAccount {
  for (const source of sources) {
    const found = accountFieldValue(payload, ACCOUNT_SOURCE_FIELDS[source]);
    if (found === null) continue;
    if (found.text === null) return { ok: false, field: found.field, message: found.problem! };
    const claim = CLIENT_SETTABLE_SOURCES.includes(source)
      ? null
      : accountFieldValue(payload, ACCOUNT_SOURCE_FIELDS.spend_logs_metadata)?.text ?? null;
    return { ok: true, billingAccountId: found.text, claimedBillingAccountId: claim !== found.text ? claim : null };
  }
  return { ok: true, billingAccountId: null, claimedBillingAccountId: null };
}

export type ReadOptions = { billingAccountFrom: readonly BillingAccountSource[] };

export type NormalisedItem = { ok: true; event: UsageEvent } | { ok: false; rejected: RejectedItem };

/** Validates one callback item and reduces it to a usage event, or says why it cannot be. */
export function normaliseCallbackItem(item: unknown, options: ReadOptions): NormalisedItem {
  const rawKey = idempotencyKeyOf(item);
  const canonicalKey = rawKey === null ? null : canonicalId(rawKey);
  // An unusable key is kept (shortened) as sent, so the quarantine row shows what arrived.
  const idempotencyKey = canonicalKey?.ok ? canonicalKey.value : rawKey === null ? null : keptText(rawKey);
  const reject = (reason: string, issues: unknown[]): NormalisedItem => ({
    ok: false,
    rejected: {
      reason,
      idempotencyKey,
      issues,
      item: sanitiseCallbackItem(item),
    },
  });
  if (item instanceof UnparseableLine) return reject("invalid_json", [{ message: "this ndjson line is not JSON" }]);
  if (!isRecord(item)) return reject("invalid_payload", [{ message: "each item must be a JSON object" }]);
  const parsed = litellmPayloadSchema.safeParse(readFields(item));
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
  const detailIssues = [];
  if (usage.cacheReadTokens + usage.cacheWriteTokens + usage.audioInputTokens > payload.prompt_tokens) {
    detailIssues.push({ path: "prompt_tokens", message: "cached reads, cache writes and audio input exceed prompt_tokens" });
  }
  if (usage.cacheWrite1hTokens > usage.cacheWriteTokens) {
    detailIssues.push({ path: "prompt_tokens_details.cache_creation_token_details", message: "1-hour cache writes exceed cache writes" });
  }
  if (usage.reasoningTokens + usage.audioOutputTokens > payload.completion_tokens) {
    detailIssues.push({ path: "completion_tokens", message: "reasoning and audio output tokens exceed completion_tokens" });
  }
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
      reportedCostUsd:
        payload.response_cost === null || payload.response_cost === undefined
          ? null
          : toDecimalString(decimalFromNumber(payload.response_cost)),
      eventTime: endTime ?? startTime,
      ...presentDetail(item, usage),
    },
  };
}

/**
 * The detail most calls do not have, only where a call has it: every event sits in Redis, is
 * written by the receiver and read by a worker, so a field of every event costs on every call.
 */
function presentDetail(item: Record<string, unknown>, usage: TokenDetail): Partial<UsageEvent> {
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
  return detail;
}

/**
 * The fields the schema reads, as sent: validating this projection instead of the whole item
 * keeps zod from copying prompts and responses it never looks at (most of a payload's bytes).
 */
function readFields(item: Record<string, unknown>): Record<string, unknown> {
  const read: Record<string, unknown> = {};
  for (const field of TOP_LEVEL_FIELDS) if (field in item) read[field] = item[field];
  for (const [field, nested] of [
    ["model_map_information", ["model_map_key"]],
    ["metadata", ["spend_logs_metadata", "usage_object"]],
    ["hidden_params", ["usage_object"]],
    ["response", ["usage"]],
  ] as const) {
    const value = item[field];
    if (!isRecord(value)) {
      if (field in item) read[field] = value;
      continue;
    }
    const kept: Record<string, unknown> = {};
    for (const key of nested) if (key in value) kept[key] = value[key];
    read[field] = kept;
  }
  return read;
}

const ACCOUNT_METADATA_FIELDS = ["user_api_key_team_id", "user_api_key_user_id", "user_api_key_org_id", "user_api_key_end_user_id"];
const TOP_LEVEL_FIELDS = [
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

/**
 * The fields billing reads and nothing else, so a quarantined item can be inspected and
 * replayed without keeping prompt or response text. Each is kept exactly as sent, or replaced
 * by a `{"not_kept": why}` marker where jsonb cannot hold it exactly (NUL, a lone surrogate, a
 * number past a double) or it is too big to keep: replay refuses a copy with a marker
 * (`firstNotKept`) rather than read a stand-in as the value. A value billing skips unless it
 * is an object (a usage object, `response`, a rate billing would not use) is left out when it
 * is not one, which billing reads the same way.
 */
export function sanitiseCallbackItem(item: unknown): Record<string, unknown> {
  if (item instanceof UnparseableLine) return { not_json: { sha256: item.sha256, bytes: item.bytes } };
  if (!isRecord(item)) {
    // Distinct refused items stay distinct rows; their content is not kept, only its digest.
    const text = serialised(item);
    return { not_an_object: { type: Array.isArray(item) ? "array" : typeof item, sha256: sha256(text), bytes: Buffer.byteLength(text) } };
  }
  return keptObject(item, CALLBACK_ITEM_SHAPE.fields);
}

/**
 * How the copy keeps a field: `exact` (the value, or a marker), an object of fields (a value
 * that is not an object is kept exactly, since billing refuses it, or left out where billing
 * skips it), or a function for fields billing reads leniently (undefined: left out).
 */
type FieldShape = "exact" | ObjectShape | ((value: unknown) => unknown);
type ObjectShape = { fields: Record<string, FieldShape>; skippedUnlessObject?: true };

const exactFields = (...fields: string[]): Record<string, FieldShape> => Object.fromEntries(fields.map((field) => [field, "exact"]));

// Usage objects: only the first one that is an object is read (usageDetail).
const USAGE_SHAPE: ObjectShape = {
  skippedUnlessObject: true,
  fields: {
    ...exactFields("prompt_tokens", "completion_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"),
    prompt_tokens_details: {
      fields: {
        ...exactFields("cached_tokens", "cache_creation_tokens", "audio_tokens", "web_search_requests"),
        cache_creation_token_details: { fields: exactFields("ephemeral_1h_input_tokens") },
      },
    },
    completion_tokens_details: { fields: exactFields("reasoning_tokens", "audio_tokens") },
    server_tool_use: { fields: exactFields("web_search_requests") },
  },
};

// An account path through a value that is not an object finds nothing (accountFieldValue).
const ACCOUNT_OBJECT_SHAPE: ObjectShape = { skippedUnlessObject: true, fields: exactFields("billing_account_id") };

const CALLBACK_ITEM_SHAPE: ObjectShape = {
  fields: {
    ...exactFields(...TOP_LEVEL_FIELDS),
    model_map_information: { fields: { model_map_key: "exact", model_map_value: keptRates } },
    // requestedTiers reads a tier only when it is storable text and a size only when it is known.
    model_parameters: {
      skippedUnlessObject: true,
      fields: {
        service_tier: (tier) => (typeof tier === "string" && isStorableText(tier) ? exactValue(tier) : undefined),
        web_search_options: {
          skippedUnlessObject: true,
          fields: { search_context_size: (size) => SEARCH_CONTEXT_SIZES.find((known) => known === size) },
        },
      },
    },
    metadata: {
      fields: {
        ...exactFields(...ACCOUNT_METADATA_FIELDS),
        usage_object: USAGE_SHAPE,
        spend_logs_metadata: ACCOUNT_OBJECT_SHAPE,
        user_api_key_auth_metadata: ACCOUNT_OBJECT_SHAPE,
      },
    },
    hidden_params: { fields: { usage_object: USAGE_SHAPE } },
    response: { skippedUnlessObject: true, fields: { usage: USAGE_SHAPE } },
  },
};

function keptField(value: unknown, shape: FieldShape): unknown {
  if (shape === "exact") return exactValue(value);
  if (typeof shape === "function") return shape(value);
  if (isRecord(value)) return keptObject(value, shape.fields);
  return shape.skippedUnlessObject ? undefined : exactValue(value);
}

function keptObject(source: Record<string, unknown>, fields: Record<string, FieldShape>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [field, shape] of Object.entries(fields)) {
    if (!Object.hasOwn(source, field)) continue;
    const copy = keptField(source[field], shape);
    if (copy !== undefined) kept[field] = copy;
  }
  return kept;
}

/**
 * The rates of model_map_value as gatewayRateDetail reads them: rate fields that are finite
 * numbers, and one rate for another unit above zero (all billing reads of those is that one exists).
 */
function keptRates(value: unknown): unknown {
  if (!isRecord(value)) return undefined;
  const kept: Record<string, unknown> = {};
  let otherUnitKept = false;
  for (const [field, rate] of Object.entries(value)) {
    if (RATE_FIELD_SET.has(field)) {
      if (typeof rate === "number" && Number.isFinite(rate)) kept[field] = rate;
    } else if (!otherUnitKept && typeof rate === "number" && rate > 0 && OTHER_UNIT_RATE.test(field)) {
      if (!Number.isFinite(rate) || textNotKept(field) !== null) return notKept("a rate for another unit whose name or value jsonb cannot hold");
      kept[field] = rate;
      otherUnitKept = true;
    }
  }
  const search = value.search_context_cost_per_query;
  if (isRecord(search)) {
    const sizes: Record<string, unknown> = {};
    for (const size of SEARCH_CONTEXT_SIZES) {
      const rate = search[`search_context_size_${size}`];
      if (typeof rate === "number" && Number.isFinite(rate)) sizes[`search_context_size_${size}`] = rate;
    }
    kept.search_context_cost_per_query = sizes;
  }
  return kept;
}

const NOT_KEPT = "not_kept";

function notKept(why: string): { [NOT_KEPT]: string } {
  return { [NOT_KEPT]: why };
}

/** The value itself when jsonb holds it exactly and it is small, else a marker saying why not. */
function exactValue(value: unknown): unknown {
  if (typeof value === "string") {
    const why = textNotKept(value);
    return why === null ? value : notKept(why);
  }
  // JSON.parse reads 1e400 as Infinity, which JSON and jsonb cannot write.
  if (typeof value === "number") return Number.isFinite(value) ? value : notKept("a number beyond a double");
  if (value === null || typeof value === "boolean") return value;
  return notKept(Array.isArray(value) ? "array" : typeof value);
}

const MAX_KEPT_TEXT = 1024;

/**
 * Why a text cannot be kept exactly, or null. Copies written before markers existed cut long
 * text, wrote NUL as the text `\u0000` and a lone surrogate as U+FFFD; a text holding either
 * cannot be told apart from such a copy, so it is not kept either.
 */
function textNotKept(text: string): string | null {
  if (text.length > MAX_KEPT_TEXT) return `text longer than ${MAX_KEPT_TEXT} characters`;
  if (text.includes("\u0000")) return "text holding NUL";
  if (!text.isWellFormed()) return "text holding a lone surrogate";
  if (text.includes("\\u0000") || text.includes("\uFFFD")) return "text holding \\u0000 or U+FFFD, as older copies wrote NUL and lone surrogates";
  return null;
}

/** An unusable key as its quarantine row shows it, cut to a length worth showing. */
function keptText(value: string): string {
  // toWellFormed: the cut may split a surrogate pair.
  return value.length > MAX_KEPT_TEXT ? `${value.slice(0, MAX_KEPT_TEXT).toWellFormed()}…(${value.length} characters)` : value;
}

// What this version and older ones wrote in place of what they did not keep, and what each says.
const MARKERS: Record<string, (marker: unknown) => string> = {
  [NOT_KEPT]: (why) => String(why),
  not_a_scalar: (kind) => `${String(kind)} (an older copy kept only that)`,
  not_json: () => "the line was not JSON",
  not_an_object: () => "the item was not a JSON object",
};

/**
 * Where a kept copy (this version's or an older one's) does not hold what arrived exactly, and
 * why; null when it holds it all. Kept copies name only fields billing reads, so a marker's key
 * cannot be sent from outside.
 */
export function firstNotKept(copy: unknown, path: readonly string[] = []): { path: string; why: string } | null {
  const at = () => path.join(".") || "(the item)";
  if (typeof copy === "string") {
    const why = textNotKept(copy);
    return why === null ? null : { path: at(), why };
  }
  if (typeof copy !== "object" || copy === null) return null;
  for (const [key, value] of Object.entries(copy)) {
    if (Object.hasOwn(MARKERS, key)) return { path: at(), why: MARKERS[key]!(value) };
    const found = firstNotKept(value, [...path, key]);
    if (found !== null) return found;
  }
  return null;
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

function serialised(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // Nested past what JSON.stringify can walk; the body's size already bounds it.
    return `unserialisable ${Array.isArray(value) ? "array" : typeof value}`;
  }
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
