import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type BillingAccountSource, DEFAULT_BILLING_ACCOUNT_FROM } from "../../src/platform/config.js";
import { frameCallbackBody, MAX_ITEM_DEPTH, MAX_ITEM_VALUES, OversizedItem, parseCallbackBody } from "../../src/litellm/callback-body.js";
import { firstNotKept } from "../../src/litellm/sanitise.js";
import { normaliseCallbackItem, type ReadOptions } from "../../src/litellm/normalise.js";
import { sanitiseCallbackItem } from "../../src/litellm/sanitise.js";
import { usageEventSchema } from "../../src/usage/usage-event.js";
import { litellmPayload, STANDARD_LOGGING_PAYLOAD } from "../support/litellm-payloads.js";

/** The detail classes of `usage` as a usage event carries them. */
function eventTotals(usage: Record<string, any>) {
  return {
    cacheReadTokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
    audioInputTokens: usage.prompt_tokens_details?.audio_tokens,
    reasoningTokens: usage.completion_tokens_details?.reasoning_tokens ?? 0,
    cacheWriteTokens: usage.cache_creation_input_tokens ?? 0,
    cacheWrite1hTokens: usage.prompt_tokens_details?.cache_creation_token_details?.ephemeral_1h_input_tokens,
  };
}

const DEFAULT_READ: ReadOptions = { billingAccountFrom: DEFAULT_BILLING_ACCOUNT_FROM };
const readFrom = (...sources: BillingAccountSource[]): ReadOptions => ({ billingAccountFrom: sources });
const LIMITS = { maxItems: 4096 };

function accepted(item: unknown, options = DEFAULT_READ) {
  const result = normaliseCallbackItem(item, options);
  if (!result.ok) throw new Error(`rejected: ${JSON.stringify(result.rejected)}`);
  return result.event;
}

function rejected(item: unknown, options = DEFAULT_READ) {
  const result = normaliseCallbackItem(item, options);
  if (result.ok) throw new Error("accepted");
  return result.rejected;
}

describe("normaliseCallbackItem", () => {
  it("reduces LiteLLM's example to the fields billing reads", () => {
    expect(accepted(STANDARD_LOGGING_PAYLOAD)).toEqual({
      idempotencyKey: "chatcmpl-2299b6a2-82a3-465a-b47c-04e685a2227f",
      billingAccountId: null,
      status: "success",
      cacheHit: false,
      model: "gpt-4o",
      modelGroup: null,
      modelMapKey: "gpt-4o",
      provider: "openai",
      promptTokens: 10,
      completionTokens: 20,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      reasoningTokens: 0,
      callType: "acompletion",
      // The rates LiteLLM used, as the decimals it wrote; its _batches rates price no call here,
      // and its search rates only a call that searched. Detail the call has none of is left out.
      gatewayRates: {
        input_cost_per_token: "0.0000025",
        output_cost_per_token: "0.00001",
        cache_read_input_token_cost: "0.00000125",
      },
      // LiteLLM's own float sum, kept digit for digit as it was sent.
      reportedCostUsd: "0.00022500000000000002",
      eventTime: "2025-01-24T09:20:46.851Z",
    });
  });

  it("keys on id, else litellm_call_id (which a caller can set), and never on empty, None or null", () => {
    expect(accepted({ ...litellmPayload("provider-id", "t"), litellm_call_id: "call-1" }).idempotencyKey).toBe("provider-id");
    expect(accepted({ ...litellmPayload("None", "t"), litellm_call_id: "call-1" }).idempotencyKey).toBe("call-1");
    for (const id of ["None", "null", "", "  "]) {
      expect(rejected({ ...litellmPayload(id, "t"), litellm_call_id: null }).reason).toBe("no_idempotency_key");
    }
  });

  it("by default bills only what LiteLLM fills from the authenticated key: its metadata, team, user", () => {
    const metadata = {
      user_api_key_auth_metadata: { billing_account_id: "key-account" },
      user_api_key_team_id: "team",
      user_api_key_user_id: "user",
      user_api_key_org_id: "org",
      user_api_key_end_user_id: "end-user-key",
    };
    const base = { ...litellmPayload("k", null), end_user: "end-user" };
    const account = (meta: Record<string, unknown>, options = DEFAULT_READ) =>
      accepted({ ...base, metadata: meta }, options).billingAccountId;
    expect(account(metadata)).toBe("key-account");
    expect(account({ ...metadata, user_api_key_auth_metadata: { billing_account_id: " " } })).toBe("team");
    expect(account({ ...metadata, user_api_key_auth_metadata: null, user_api_key_team_id: "" })).toBe("user");
    // End users come from the caller's `user` parameter: never a payer unless listed.
    expect(account({ user_api_key_end_user_id: "end-user-key" })).toBeNull();
    expect(account({}, readFrom("team", "end_user"))).toBe("end-user");
    expect(account({ user_api_key_org_id: "org" }, readFrom("team", "org"))).toBe("org");
  });

  it("never lets a caller's spend_logs_metadata choose the payer by default, and says so on the event", () => {
    const forged = litellmPayload("forged-1", "team-a", { metadata: { spend_logs_metadata: { billing_account_id: "victim" } } });
    expect(accepted(forged)).toMatchObject({ billingAccountId: "team-a", claimedBillingAccountId: "victim" });
    // Listed first, as a deployment whose every key holder is a trusted backend may choose.
    const optedIn = accepted(forged, readFrom("spend_logs_metadata", "team"));
    expect(optedIn.billingAccountId).toBe("victim");
    expect(optedIn.claimedBillingAccountId).toBeUndefined();
    // Listed after the team, the team still pays and the claim is kept.
    expect(accepted(forged, readFrom("team", "spend_logs_metadata"))).toMatchObject({
      billingAccountId: "team-a",
      claimedBillingAccountId: "victim",
    });
    const agreeing = litellmPayload("agree-1", "team-a", { metadata: { spend_logs_metadata: { billing_account_id: "team-a" } } });
    expect(accepted(agreeing).claimedBillingAccountId).toBeUndefined();
    // No trusted source: the claim does not pay; the call waits in quarantine for an account.
    const claimOnly = litellmPayload("claim-only", null, { metadata: { spend_logs_metadata: { billing_account_id: "victim" } } });
    expect(accepted(claimOnly)).toMatchObject({ billingAccountId: null });
  });

  it("keys a cache hit apart from the call whose response it reused, as LiteLLM's spend log does", () => {
    const hit = { ...litellmPayload("chatcmpl-original", "t"), cache_hit: true, startTime: 1737710446.85 };
    expect(accepted(hit).idempotencyKey).toBe("chatcmpl-original_cache_hit1737710446.85");
    expect(accepted({ ...hit, id: "chatcmpl-original_cache_hit99" }).idempotencyKey).toBe("chatcmpl-original_cache_hit99");
    expect(accepted({ ...hit, cache_hit: false }).idempotencyKey).toBe("chatcmpl-original");
  });

  it("keeps account ids and keys in one canonical form: NFC, never trimmed", () => {
    const nfd = "Jose\u0301";
    expect(accepted(litellmPayload("nfd-1", nfd)).billingAccountId).toBe("Jos\u00e9");
    expect(accepted(litellmPayload("nfd-1", "Jos\u00e9")).billingAccountId).toBe("Jos\u00e9");
    expect(accepted(litellmPayload("padded", " team ")).billingAccountId).toBe(" team ");
    expect(accepted(litellmPayload(" key ", "t")).idempotencyKey).toBe(" key ");
    expect(accepted(litellmPayload("cafe\u0301-call", "t")).idempotencyKey).toBe("caf\u00e9-call");
    for (const hostile of ["esc-\u001b[2J", "c1-\u009b", "nl-\nx", "nul-\u0000"]) {
      expect(rejected(litellmPayload("ctl", hostile))).toMatchObject({
        reason: "invalid_billing_account",
        issues: [{ path: "metadata.user_api_key_team_id" }],
      });
      expect(rejected(litellmPayload(hostile, "t")).reason).toBe("invalid_idempotency_key");
    }
  });

  it("refuses detail that exceeds its total, by the same rule a queued event is checked with", () => {
    const item = (usage: Record<string, unknown>) => ({
      ...litellmPayload("k-detail", "t"),
      prompt_tokens: 100,
      completion_tokens: 10,
      metadata: { user_api_key_team_id: "t", usage_object: usage },
    });
    const cases = [
      [{ prompt_tokens_details: { cached_tokens: 60, audio_tokens: 41 } }, "prompt_tokens", "promptTokens"],
      [{ completion_tokens_details: { reasoning_tokens: 11 } }, "completion_tokens", "completionTokens"],
      [{ cache_creation_input_tokens: 5, prompt_tokens_details: { cache_creation_token_details: { ephemeral_1h_input_tokens: 6 } } }, "prompt_tokens_details.cache_creation_token_details", "cacheWriteTokens"],
    ] as const;
    for (const [usage, litellmPath, eventPath] of cases) {
      const refusal = rejected(item(usage));
      expect(refusal.reason).toBe("invalid_payload");
      expect(refusal.issues).toEqual([expect.objectContaining({ path: litellmPath })]);
      // The same message, from the one rule, when a queued event breaks it.
      const queued = usageEventSchema.safeParse({ ...accepted(item({})), ...eventTotals(usage) });
      expect(queued.success).toBe(false);
      expect(queued.error!.issues.map((issue) => [issue.path.join("."), issue.message])).toEqual([
        [eventPath, (refusal.issues[0] as { message: string }).message],
      ]);
    }
  });

  it("reads cache detail from the first usage object present, OpenAI and Anthropic shapes", () => {
    const openAi = { prompt_tokens: 100, completion_tokens: 10, prompt_tokens_details: { cached_tokens: 60 } };
    const anthropic = { cache_read_input_tokens: 30, cache_creation_input_tokens: 20 };
    const item = (fields: Record<string, unknown>) => ({
      ...litellmPayload("k", "t"),
      prompt_tokens: 100,
      completion_tokens: 10,
      ...fields,
    });
    expect(accepted(item({ metadata: { user_api_key_team_id: "t", usage_object: openAi }, response: { usage: anthropic } }))).toMatchObject({
      cacheReadTokens: 60,
      cacheWriteTokens: 0,
    });
    expect(accepted(item({ hidden_params: { usage_object: anthropic }, response: { usage: openAi } }))).toMatchObject({
      cacheReadTokens: 30,
      cacheWriteTokens: 20,
    });
    expect(
      accepted(
        item({
          response: {
            usage: {
              prompt_tokens_details: { cached_tokens: 5, cache_creation_tokens: 7 },
              completion_tokens_details: { reasoning_tokens: 4 },
            },
          },
        }),
      ),
    ).toMatchObject({ cacheReadTokens: 5, cacheWriteTokens: 7, reasoningTokens: 4 });
  });

  it("takes times as epoch seconds or LiteLLM's datetime text, in UTC", () => {
    expect(accepted({ ...litellmPayload("k", "t"), endTime: 1737710446.5 }).eventTime).toBe("2025-01-24T09:20:46.500Z");
    expect(accepted({ ...litellmPayload("k", "t"), endTime: "2025-01-24 09:20:46" }).eventTime).toBe("2025-01-24T09:20:46.000Z");
    expect(accepted({ ...litellmPayload("k", "t"), endTime: null, startTime: "2025-01-24 09:20:45.1" }).eventTime).toBe(
      "2025-01-24T09:20:45.100Z",
    );
    expect(rejected({ ...litellmPayload("k", "t"), endTime: "2025-02-30 10:00:00" }).issues).toEqual([
      expect.objectContaining({ path: "endTime" }),
    ]);
  });

  it("rejects impossible usage item by item, with the field named", () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ prompt_tokens: -1 }, "prompt_tokens"],
      [{ completion_tokens: 1.5 }, "completion_tokens"],
      [{ response_cost: -0.01 }, "response_cost"],
      [{ status: "maybe" }, "status"],
      [{ prompt_tokens: 10, response: { usage: { cache_read_input_tokens: 11 } } }, "prompt_tokens"],
      [{ response: { usage: { cache_read_input_tokens: -2 } } }, "response.usage.cache_read_input_tokens"],
    ];
    for (const [fields, path] of cases) {
      const result = rejected({ ...litellmPayload("bad", "t"), ...fields });
      expect(result.reason).toBe("invalid_payload");
      expect(result.idempotencyKey).toBe("bad");
      expect(result.issues).toContainEqual(expect.objectContaining({ path }));
    }
  });

  it("keeps only the fields billing reads when it refuses an item", () => {
    const item = {
      ...litellmPayload("bad", "t", { metadata: { spend_logs_metadata: { billing_account_id: "b", note: "free text" } } }),
      prompt_tokens: -1,
      model_parameters: { temperature: 0.2, tools: [{ type: "function" }], service_tier: "priority" },
    };
    const kept = rejected(item).item as Record<string, unknown>;
    expect(kept).not.toHaveProperty("messages");
    expect(kept.model_parameters).toEqual({ service_tier: "priority" });
    expect(kept.response).toEqual({ usage: { prompt_tokens: 10, completion_tokens: 20, prompt_tokens_details: null, completion_tokens_details: null } });
    expect(kept.metadata).toEqual({
      user_api_key_team_id: "t",
      user_api_key_user_id: null,
      user_api_key_org_id: null,
      user_api_key_end_user_id: null,
      spend_logs_metadata: { billing_account_id: "b" },
      // The key's hash, which enforcement blocks by: LiteLLM's fixture sends null.
      user_api_key_hash: null,
    });
    expect(kept.prompt_tokens).toBe(-1);
  });
});

describe("parseCallbackBody", () => {
  it("tells json_array, single object and ndjson apart by the body", () => {
    expect(parseCallbackBody('[{"a":1},{"a":2}]', LIMITS)).toEqual({ ok: true, items: [{ a: 1 }, { a: 2 }] });
    expect(parseCallbackBody('{"a":1}', LIMITS)).toEqual({ ok: true, items: [{ a: 1 }] });
    expect(parseCallbackBody('{"a":1}\n\n{"a":2}\n', LIMITS)).toEqual({ ok: true, items: [{ a: 1 }, { a: 2 }] });
  });

  it("lets one bad ndjson line cost only itself", () => {
    const parsed = parseCallbackBody('{"a":1}\n{oops\n{"a":3}', LIMITS);
    expect(parsed.ok && parsed.items.length).toBe(3);
    if (parsed.ok) expect(rejected(parsed.items[1]).reason).toBe("invalid_json");
  });

  it("refuses an empty body or batch and a body that is not JSON", () => {
    expect(parseCallbackBody("  ", LIMITS)).toMatchObject({ ok: false, code: "empty_batch" });
    expect(parseCallbackBody("[]", LIMITS)).toMatchObject({ ok: false, code: "empty_batch" });
    expect(parseCallbackBody("<xml/>", LIMITS)).toMatchObject({ ok: false, code: "invalid_json" });
  });
});

describe("frameCallbackBody", () => {
  const bytes = (text: string) => Buffer.from(text, "utf8");
  const framedCount = (text: string, maxItems = 4096) => {
    const framed = frameCallbackBody(bytes(text), { maxItems });
    return framed.ok ? framed.items.length : framed.code;
  };

  it("counts an array's items and refuses more than the limit before anything is parsed", () => {
    const items = (n: number) => `[${Array(n).fill('{"id":"a,[{"}').join(",")}]`;
    expect(framedCount(items(4), 4)).toBe(4);
    expect(framedCount(items(5), 4)).toBe("too_many_items");
    // Commas and brackets inside strings, nested arrays and escaped quotes are not items.
    const nested = '[{"a":[1,2,3],"b":"x\\",\\"[,,"},{"c":{"d":[4,5]}}]';
    expect(JSON.parse(nested)).toHaveLength(2);
    expect(framedCount(nested, 2)).toBe(2);
    expect(framedCount("{}\n".repeat(5), 4)).toBe("too_many_items");
    // An array that never closes is counted all the same.
    expect(framedCount(`[${Array(5).fill("{}").join(",")}`, 4)).toBe("too_many_items");
    expect(framedCount(JSON.stringify(Array(512).fill(STANDARD_LOGGING_PAYLOAD)), 512)).toBe(512);
  });

  it("counts each item's values and depth on its own, however broken the item", () => {
    const framed = frameCallbackBody(bytes(`[{"a":[1,{}]} , [[["x"]]],{"b":NaN}]`), LIMITS);
    expect(framed.ok && framed.items.map(({ values, depth }) => ({ values, depth }))).toEqual([
      { values: 5, depth: 3 },
      { values: 4, depth: 3 },
      { values: 3, depth: 1 },
    ]);
    // A broken ndjson line cannot hide what follows inside an unterminated string, even after a backslash.
    for (const broken of ['{"id":"unterminated', '{"a":"\\']) {
      const lines = frameCallbackBody(bytes(`${broken}\n[${"{},".repeat(9)}{}]`), LIMITS);
      expect(lines.ok && lines.items[1]).toMatchObject({ values: 11, depth: 2 });
    }
    // Bare tokens count too: Python's NaN literals, numbers, separated by whitespace alone.
    const tokens = frameCallbackBody(bytes(`{}\n${"NaN ".repeat(10)}`), LIMITS);
    expect(tokens.ok && tokens.items[1]!.values).toBe(10);
  });

  it("refuses whole only a body it cannot frame", () => {
    expect(framedCount("<xml/>")).toBe("invalid_json");
    expect(framedCount('{"a":1} trailing')).toBe("invalid_json");
    expect(framedCount("[1,,2]")).toBe("invalid_json");
    expect(framedCount("[ ]")).toBe("empty_batch");
    // A byte-order mark is no JSON: the body is not framed, as JSON.parse would not read it.
    expect(framedCount(`\ufeff[{}]`)).toBe("invalid_json");
  });
});

describe("an item over the per-item bounds", () => {
  const wrapped = (id: string, requesterMetadata: string) => JSON.stringify(litellmPayload(id, "team-t")).replace('"metadata":{', `"metadata":{"requester_metadata":${requesterMetadata},`);

  it("is refused on its own, its key and billing fields read from its bytes, the rest of the batch read", () => {
    const tooMany = wrapped("too-many", `[${"0,".repeat(MAX_ITEM_VALUES)}0]`);
    const tooDeep = wrapped("too-deep", `${"[".repeat(MAX_ITEM_DEPTH + 1)}${"]".repeat(MAX_ITEM_DEPTH + 1)}`);
    const fine = JSON.stringify(litellmPayload("fine", "team-t"));
    const parsed = parseCallbackBody(`[${fine},${tooMany},${tooDeep}]`, LIMITS);
    if (!parsed.ok) throw new Error(parsed.message);
    expect(accepted(parsed.items[0]).idempotencyKey).toBe("fine");
    for (const [index, id, why] of [[1, "too-many", "more than 1000000 JSON values"], [2, "too-deep", "deeper than 128 levels"]] as const) {
      expect(parsed.items[index]).toBeInstanceOf(OversizedItem);
      const refusal = rejected(parsed.items[index]);
      expect(refusal).toMatchObject({ reason: "item_too_large", idempotencyKey: id });
      expect(refusal.issues[0]).toMatchObject({ message: expect.stringContaining(why) });
      // Its billing fields as a whole item's copy keeps them, and a marker replay refuses on.
      const copy = refusal.item as Record<string, any>;
      expect(copy.prompt_tokens).toBe(STANDARD_LOGGING_PAYLOAD.prompt_tokens);
      expect(copy.metadata.user_api_key_team_id).toBe("team-t");
      expect(firstNotKept(copy)).toMatchObject({ path: "(the item)", why: expect.stringContaining(why) });
    }
  });

  it("keeps what it can read of a billing field in bounds and leaves out one that is not", () => {
    const hugeModel = JSON.stringify({ id: "m", model: Array(20_000).fill("x"), prompt_tokens: 3, pad: Array(MAX_ITEM_VALUES).fill(0) });
    const parsed = parseCallbackBody(hugeModel, LIMITS);
    const copy = parsed.ok ? rejected(parsed.items[0]).item : null;
    expect(copy).toMatchObject({ id: "m", prompt_tokens: 3 });
    expect(copy).not.toHaveProperty("model");
    expect(copy).not.toHaveProperty("pad");
  });
});

describe("Python's json.dumps literals", () => {
  it("costs only the item whose field went NaN or Infinity, naming the field", () => {
    const good = JSON.stringify(litellmPayload("finite-1", "t"));
    const bad = JSON.stringify(litellmPayload("nan-1", "t")).replace('"response_cost":0.00022500000000000002', '"response_cost":NaN');
    const infinite = JSON.stringify(litellmPayload("inf-1", "t")).replace('"prompt_tokens":10', '"prompt_tokens":-Infinity');
    expect(bad).toContain("NaN");
    expect(infinite).toContain("-Infinity");
    const parsed = parseCallbackBody(`[${good},${bad},${infinite}]`, LIMITS);
    if (!parsed.ok) throw new Error("the batch did not parse");
    expect(normaliseCallbackItem(parsed.items[0], DEFAULT_READ).ok).toBe(true);
    expect(rejected(parsed.items[1]).issues).toEqual([{ path: "response_cost", message: "NaN is not a finite number" }]);
    expect(rejected(parsed.items[2]).issues).toContainEqual({ path: "prompt_tokens", message: "-Infinity is not a finite number" });
  });

  it("leaves the same words inside strings alone, and ignores them where the field is not read", () => {
    const payload = { ...litellmPayload("words-1", "t"), model_parameters: { temperature: "NaN" }, note: "Infinity and NaN" };
    const text = JSON.stringify(payload).replace('"saved_cache_cost":0', '"saved_cache_cost":Infinity');
    expect(text).toContain('"saved_cache_cost":Infinity');
    const parsed = parseCallbackBody(text, LIMITS);
    if (!parsed.ok) throw new Error("the body did not parse");
    expect((parsed.items[0] as { note: string }).note).toBe("Infinity and NaN");
    expect(accepted(parsed.items[0]).idempotencyKey).toBe("words-1");
  });
});

describe("keys and accounts that PostgreSQL must store exactly", () => {
  it("ignores account fields it does not bill, however odd", () => {
    const oddEndUser = { ...litellmPayload("odd-1", "team-odd"), end_user: "u".repeat(600) };
    expect(accepted(oddEndUser).billingAccountId).toBe("team-odd");
    const nulEndUser = litellmPayload("odd-2", "team-odd", { metadata: { user_api_key_end_user_id: "a\u0000b" } });
    expect(accepted(nulEndUser).billingAccountId).toBe("team-odd");
    const longCallId = { ...litellmPayload("id-odd-3", "team-odd"), litellm_call_id: "x".repeat(600) };
    expect(accepted(longCallId).idempotencyKey).toBe("id-odd-3");
  });

  it("refuses a key or a chosen account that cannot be stored as sent", () => {
    expect(rejected(litellmPayload("k".repeat(513), "t")).reason).toBe("invalid_idempotency_key");
    expect(rejected(litellmPayload("lone-\ud800", "t")).reason).toBe("invalid_idempotency_key");
    expect(rejected(litellmPayload("nul-\u0000", "t")).reason).toBe("invalid_idempotency_key");
    const longAccount = litellmPayload("acct-1", null, { end_user: "e".repeat(513) });
    expect(rejected(longAccount, readFrom("end_user"))).toMatchObject({ reason: "invalid_billing_account", issues: [{ path: "end_user" }] });
    expect(rejected(litellmPayload("acct-1b", "t".repeat(513))).reason).toBe("invalid_billing_account");
    const loneAccount = litellmPayload("acct-2", "team-\udc00");
    expect(rejected(loneAccount)).toMatchObject({ reason: "invalid_billing_account", issues: [{ path: "metadata.user_api_key_team_id" }] });
    const objectAccount = litellmPayload("acct-3", "team", { metadata: { spend_logs_metadata: { billing_account_id: { id: 1 } } } });
    expect(rejected(objectAccount, readFrom("spend_logs_metadata", "team"))).toMatchObject({ reason: "invalid_billing_account", issues: [{ path: "metadata.spend_logs_metadata.billing_account_id" }] });
  });

  it("takes a whole-number billing account id as its decimal text, never falling through to the team", () => {
    const numeric = litellmPayload("acct-4", "team", { metadata: { spend_logs_metadata: { billing_account_id: 12345 } } });
    expect(accepted(numeric, readFrom("spend_logs_metadata", "team")).billingAccountId).toBe("12345");
  });

  it("refuses year 0000, which PostgreSQL cannot store", () => {
    expect(rejected({ ...litellmPayload("year-0", "t"), endTime: "0000-01-01 00:00:00" }).issues).toContainEqual(
      expect.objectContaining({ path: "endTime" }),
    );
  });
});

describe("what LiteLLM 1.81 adds", () => {
  const FIXTURES = new URL("../fixtures/litellm-1.81.13/captured/", import.meta.url);
  const captured = (name: string): Record<string, any> => JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), "utf8"));

  it("reads the mode of an Anthropic call from its usage, only where the provider set one", () => {
    const base = captured("opus-4-6-base");
    expect(base.metadata.usage_object).toMatchObject({ speed: null, inference_geo: null });
    const event = accepted(base);
    expect(event.speed).toBeUndefined();
    expect(event.inferenceGeo).toBeUndefined();
    const fast = structuredClone(base);
    Object.assign(fast.metadata.usage_object, { speed: "fast", inference_geo: "us" });
    expect(accepted(fast)).toMatchObject({ speed: "fast", inferenceGeo: "us" });
    // A value that is not storable text is passed over, never a reason to refuse the call.
    fast.metadata.usage_object.speed = { fast: true };
    expect(accepted(fast).speed).toBeUndefined();
  });

  it("takes LiteLLM's cost before its margin and discount from cost_breakdown, only where they changed it", () => {
    const base = captured("opus-4-6-base");
    expect(base.cost_breakdown).toMatchObject({ original_cost: 0.0175, margin_total_amount: 0, discount_amount: 0 });
    expect(accepted(base)).not.toHaveProperty("reportedOriginalCostUsd");
    const margined = { ...base, response_cost: 0.02025, cost_breakdown: { ...base.cost_breakdown, total_cost: 0.02025, margin_percent: 0.1, margin_fixed_amount: 0.001, margin_total_amount: 0.00275 } };
    expect(accepted(margined)).toMatchObject({ reportedCostUsd: "0.02025", reportedOriginalCostUsd: "0.0175", litellmMarginUsd: "0.00275" });
    expect(accepted(margined)).not.toHaveProperty("litellmDiscountUsd");
    const discounted = { ...base, response_cost: 0.01575, cost_breakdown: { ...base.cost_breakdown, discount_percent: 0.1, discount_amount: 0.00175 } };
    expect(accepted(discounted)).toMatchObject({ reportedOriginalCostUsd: "0.0175", litellmDiscountUsd: "0.00175" });
    // Without original_cost, it is worked back exactly from response_cost: a margin is never billed for a missing figure.
    const { original_cost: _, ...withoutOriginal } = margined.cost_breakdown;
    expect(accepted({ ...margined, cost_breakdown: withoutOriginal })).toMatchObject({ reportedOriginalCostUsd: "0.0175", litellmMarginUsd: "0.00275" });
    expect(accepted({ ...base, cost_breakdown: { original_cost: -1, margin_total_amount: 1 } })).toMatchObject({ reportedOriginalCostUsd: "0", litellmMarginUsd: "1" });
    // Figures that are not finite costs are passed over: the call is read as if it had none.
    for (const odd of [{ original_cost: 0.0175, margin_total_amount: "NaN" }, { original_cost: 0.0175, margin_total_amount: -0.1 }, "breakdown"]) {
      expect(accepted({ ...base, cost_breakdown: odd }), JSON.stringify(odd)).not.toHaveProperty("reportedOriginalCostUsd");
    }
  });
});

describe("the quarantine copy", () => {
  const usage = () => ({
    prompt_tokens: 10, completion_tokens: 5, cache_read_input_tokens: 1, cache_creation_input_tokens: 2,
    prompt_tokens_details: { cached_tokens: 1, cache_creation_tokens: 2, audio_tokens: 0, web_search_requests: 1, cache_creation_token_details: { ephemeral_1h_input_tokens: 1 } },
    completion_tokens_details: { reasoning_tokens: 1, audio_tokens: 0 },
    server_tool_use: { web_search_requests: 1 },
    speed: "fast",
    inference_geo: "us",
  });
  // Written in another order than the copy's, with fields billing does not read.
  const EVERY_BILLING_FIELD = {
    response: { usage: usage(), choices: [{ message: { content: "secret" } }] },
    hidden_params: { usage_object: usage(), api_base: "x" },
    metadata: {
      user_api_key_auth_metadata: { billing_account_id: "acct-k" },
      spend_logs_metadata: { billing_account_id: "acct-s" },
      usage_object: usage(),
      user_api_key_end_user_id: "eu", user_api_key_org_id: "org", user_api_key_user_id: "user", user_api_key_team_id: "team",
      user_api_key_hash: "h",
    },
    model_parameters: { web_search_options: { search_context_size: "low" }, service_tier: "flex", temperature: 1 },
    model_map_information: { model_map_value: { search_context_cost_per_query: { search_context_size_low: 0.01 }, output_cost_per_token: 2e-6, input_cost_per_token: 1e-6 }, model_map_key: "gpt-4o" },
    end_user: "eu", endTime: 1.7e9, startTime: 1.7e9, response_cost: 0.1, completion_tokens: 5, prompt_tokens: 10,
    call_type: "completion", custom_llm_provider: "openai", model_group: "g", model: "gpt-4o", cache_hit: false, status: "success",
    id: "call-1", litellm_call_id: "lc-1", messages: [{ content: "secret" }],
    cost_breakdown: { margin_total_amount: 0.01, original_cost: 0.09, discount_amount: 0, input_cost: 0.05 },
  };

  const USAGE_PATHS = [
    "prompt_tokens", "completion_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "prompt_tokens_details",
    "prompt_tokens_details.cached_tokens", "prompt_tokens_details.cache_creation_tokens", "prompt_tokens_details.audio_tokens",
    "prompt_tokens_details.web_search_requests", "prompt_tokens_details.cache_creation_token_details",
    "prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens", "completion_tokens_details",
    "completion_tokens_details.reasoning_tokens", "completion_tokens_details.audio_tokens", "server_tool_use",
    "server_tool_use.web_search_requests", "speed", "inference_geo",
  ];
  const usagePaths = (at: string) => USAGE_PATHS.map((path) => `${at}.${path}`);

  function pathsOf(value: unknown, at: string[] = []): string[] {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return [];
    return Object.entries(value).flatMap(([key, inner]) => [[...at, key].join("."), ...pathsOf(inner, [...at, key])]);
  }

  it("keeps every field billing reads, in one order whatever order they came in, and nothing else", () => {
    // The quarantine fingerprint hashes the copy as JSON text: a changed order would keep a
    // re-sent refused item twice. This is the order copies have been written in since they had
    // markers; user_api_key_hash came later (enforcement), and so comes last in its object.
    expect(pathsOf(sanitiseCallbackItem(EVERY_BILLING_FIELD))).toEqual([
      "litellm_call_id", "id", "status", "cache_hit", "model", "model_group", "custom_llm_provider", "call_type", "prompt_tokens",
      "completion_tokens", "response_cost", "startTime", "endTime", "end_user", "model_map_information",
      "model_map_information.model_map_key", "model_map_information.model_map_value",
      "model_map_information.model_map_value.output_cost_per_token", "model_map_information.model_map_value.input_cost_per_token",
      "model_map_information.model_map_value.search_context_cost_per_query",
      "model_map_information.model_map_value.search_context_cost_per_query.search_context_size_low", "model_parameters",
      "model_parameters.service_tier", "model_parameters.web_search_options",
      "model_parameters.web_search_options.search_context_size", "metadata", "metadata.user_api_key_team_id",
      "metadata.user_api_key_user_id", "metadata.user_api_key_org_id", "metadata.user_api_key_end_user_id",
      "metadata.usage_object", ...usagePaths("metadata.usage_object"), "metadata.spend_logs_metadata",
      "metadata.spend_logs_metadata.billing_account_id", "metadata.user_api_key_auth_metadata",
      "metadata.user_api_key_auth_metadata.billing_account_id", "metadata.user_api_key_hash", "hidden_params", "hidden_params.usage_object",
    ...usagePaths("hidden_params.usage_object"), "response", "response.usage", ...usagePaths("response.usage"),
      "cost_breakdown", "cost_breakdown.original_cost", "cost_breakdown.discount_amount", "cost_breakdown.margin_total_amount",
    ]);
  });
});
