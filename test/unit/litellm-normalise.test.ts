import { describe, expect, it } from "vitest";
import { usageEventSchema } from "../../src/usage/usage-event.js";
import { accepted, DEFAULT_READ, litellmPayload, readFrom, rejected, STANDARD_LOGGING_PAYLOAD } from "../support/litellm-payloads.js";

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
