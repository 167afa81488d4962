import { describe, expect, it } from "vitest";
import { replayQuarantined } from "../../src/ops/replay-quarantine.js";
import { assignBillingAccount, listQuarantined } from "../../src/books/quarantine.js";
import { enqueueCallbackItems } from "../../src/platform/queue-producer.js";
import { rechain, rewriteBooks } from "../support/books-rewrite.js";
import { useServiceHarness } from "../support/harness.js";
import { redisText } from "../support/redis-text.js";
import { litellmPayload, STANDARD_LOGGING_PAYLOAD } from "../support/litellm-payloads.js";

const h = useServiceHarness();

async function receipt(key: string) {
  const response = await h.admin("GET", `/v1/receipts/${encodeURIComponent(key)}`);
  return { status: response.statusCode, body: response.json() };
}

async function summary(account: string) {
  const response = await h.admin("GET", `/v1/accounts/${encodeURIComponent(account)}/credits/summary`);
  return { status: response.statusCode, body: response.json() };
}

async function countRows(table: string, where: string, params: unknown[]): Promise<number> {
  const { rows } = await h.deps.database.pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, params);
  return rows[0].n;
}

describe("LiteLLM callback → queue → worker → ledger", () => {
  it("charges LiteLLM's own example payload at the price book's gpt-4o rates", async () => {
    const payload = litellmPayload("fixture-call-1", "team-fixture");
    const response = await h.postCallback([payload]);
    expect(response.statusCode).toBe(202);
    expect(response.json()).toEqual({ accepted: 1, rejected: [] });
    await h.drainQueue();

    // 10 prompt × $2.5e-6 + 20 completion × $1e-5 = $0.000225 = 2,250 credits at 1e7 credits/USD.
    const { status, body } = await receipt("fixture-call-1");
    expect(status).toBe(200);
    expect(body).toMatchObject({
      idempotency_key: "fixture-call-1",
      billing_account_id: "team-fixture",
      model: "gpt-4o",
      charged_credits: 2250,
      provider_cost_usd: "0.000225",
      pricing_source: "price_book",
      balance_after: -2250,
      event_time: "2025-01-24T09:20:46.851Z",
    });
    const ledger = await h.admin("GET", "/v1/accounts/team-fixture/ledger");
    expect(ledger.json().entries).toMatchObject([
      { kind: "charge", amount_credits: -2250, balance_before: 0, balance_after: -2250, reference: "fixture-call-1" },
    ]);
  });

  it("never keeps prompt or response text", async () => {
    const secret = "the-user-prompt-must-not-be-stored";
    const payload = litellmPayload("no-text-1", "team-text", {
      messages: [{ role: "user", content: secret }],
      response: { choices: [{ message: { content: secret } }], usage: { prompt_tokens: 10, completion_tokens: 20 } },
    });
    const unbillable = litellmPayload("no-text-2", null, { end_user: "", messages: [{ role: "user", content: secret }] });
    expect((await h.postCallback([payload, unbillable, { ...payload, id: "None", prompt_tokens: -1 }])).statusCode).toBe(207);
    await h.drainQueue();
    const { rows } = await h.deps.database.pool.query(
      `SELECT (SELECT json_agg(q) FROM quarantine q)::text AS quarantine,
              (SELECT json_agg(r) FROM charge_receipts r)::text AS receipts`,
    );
    expect(rows[0].quarantine).toContain("no-text-2");
    expect(JSON.stringify(rows[0])).not.toContain(secret);
    const stored = await redisText(h.deps.redis, h.settings.queuePrefix);
    expect(stored).toContain("no-text-1");
    expect(stored).not.toContain(secret);
    const logged = JSON.stringify(h.logs);
    for (const forbidden of [secret, "test-ingest-token-0001", "test-admin-token-0001"]) expect(logged).not.toContain(forbidden);
  });

  it("charges 1 prompt + 1 completion token of gpt-4o as 125 credits, exactly", async () => {
    await h.postCallback([
      litellmPayload("exact-1", "team-exact", {
        prompt_tokens: 1,
        completion_tokens: 1,
        response: { usage: { prompt_tokens: 1, completion_tokens: 1 } },
      }),
    ]);
    await h.drainQueue();
    // 2.5e-6 + 1e-5 in doubles is 1.2500000000000001e-5, which would ceil to 126.
    expect((await receipt("exact-1")).body.charged_credits).toBe(125);
  });

  it("records one receipt per call when the same batch arrives twice", async () => {
    const batch = [1, 2, 3].map((n) => litellmPayload(`twice-${n}`, "team-twice"));
    expect((await h.postCallback(batch)).statusCode).toBe(202);
    await h.drainQueue();
    // Redis forgets finished jobs; the second delivery must be stopped by PostgreSQL alone.
    await h.deps.usageQueue.clean(0, 10_000, "completed");
    expect((await h.postCallback(batch)).statusCode).toBe(202);
    await h.drainQueue();
    expect(await countRows("charge_receipts", "billing_account_id = $1", ["team-twice"])).toBe(3);
    expect(await countRows("ledger_entries", "billing_account_id = $1", ["team-twice"])).toBe(3);
    expect((await summary("team-twice")).body.balance_credits).toBe(-3 * 2250);
  });

  it("records one receipt when 20 concurrent requests carry the same call", async () => {
    const payload = litellmPayload("concurrent-1", "team-concurrent");
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.postCallback([payload])));
    expect(answers.map((answer) => answer.statusCode)).toEqual(Array(20).fill(202));
    await h.drainQueue();
    expect(await countRows("charge_receipts", "idempotency_key = $1", ["concurrent-1"])).toBe(1);
    expect(await countRows("ledger_entries", "billing_account_id = $1", ["team-concurrent"])).toBe(1);
    expect((await summary("team-concurrent")).body.balance_credits).toBe(-2250);
  });

  it("charges the same call once even when distinct jobs carry it to concurrent workers", async () => {
    // Different batch neighbours give different job ids, so Redis cannot dedupe: PostgreSQL must.
    const shared = litellmPayload("shared-1", "team-shared");
    await Promise.all(
      Array.from({ length: 10 }, (_, n) => h.postCallback([shared, litellmPayload(`neighbour-${n}`, "team-shared")])),
    );
    await h.drainQueue();
    expect(await countRows("charge_receipts", "idempotency_key = $1", ["shared-1"])).toBe(1);
    expect(await countRows("ledger_entries", "billing_account_id = $1", ["team-shared"])).toBe(11);
    expect(h.alerts("receipt_conflict")).toEqual([]);
  });

  it("charges 0 for a free model that served the call, whatever LiteLLM reported or the alias it was reached by", async () => {
    await h.postCallback([
      litellmPayload("free-alias-1", "team-free", {
        model_group: "my-alias",
        model: "test-free-model",
        model_map_information: null,
        response_cost: 0.5,
      }),
      litellmPayload("free-glob-1", "team-free", {
        model_group: "",
        model: "openrouter/meta-llama/llama-3:free",
        model_map_information: null,
        response_cost: 0.01,
      }),
    ]);
    await h.drainQueue();
    for (const key of ["free-alias-1", "free-glob-1"]) {
      expect((await receipt(key)).body).toMatchObject({ charged_credits: 0, pricing_source: "free", provider_cost_usd: "0" });
    }
    expect((await summary("team-free")).body.balance_credits).toBe(0);
  });

  it("records a charge that drives the balance negative and alerts exactly once", async () => {
    const grant = await h.admin("POST", "/v1/accounts/team-overdraft/grants", { credits: 1000, reference: "topup-overdraft" });
    expect(grant.statusCode).toBe(201);
    const payload = litellmPayload("overdraft-1", "team-overdraft");
    await h.postCallback([payload]);
    await h.drainQueue();
    // Delivered again, as a retry would: no second charge, no second alert.
    await h.postCallback([payload, litellmPayload("overdraft-neighbour", "team-other")]);
    await h.drainQueue();

    const { status, body } = await summary("team-overdraft");
    expect(status).toBe(200);
    expect(body).toMatchObject({ billing_account_id: "team-overdraft", balance_credits: -1250, status: "negative" });

    const negative = h.alerts("inv_post_call_negative_balance").filter((line) => line.billing_account_id === "team-overdraft");
    expect(negative).toHaveLength(1);
    expect(negative[0]).toMatchObject({
      level: 50,
      idempotency_key: "overdraft-1",
      charged_credits: 2250,
      balance_before: 1000,
      balance_after: -1250,
      crossed_zero: true,
    });
    expect(String(negative[0]!.msg)).toMatch(/^inv_post_call_negative_balance/);
    expect(typeof negative[0]!.receipt_id).toBe("string");
    const depleted = h.alerts("balance_depleted").filter((line) => line.billing_account_id === "team-overdraft");
    expect(depleted).toHaveLength(1);
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM alert_outbox WHERE delivered_at IS NULL");
    expect(rows[0].n).toBe(0);
  });

  it("charges LiteLLM's response_cost for a model in no book, and quarantines an untrusted zero", async () => {
    await h.postCallback([
      litellmPayload("unknown-1", "team-unknown", { model: "acme/brand-new-model", model_map_information: null, response_cost: 0.0012345 }),
      litellmPayload("unknown-zero", "team-unknown", { model: "acme/brand-new-model", model_map_information: null, response_cost: 0 }),
    ]);
    await h.drainQueue();
    expect((await receipt("unknown-1")).body).toMatchObject({
      charged_credits: 12345,
      provider_cost_usd: "0.0012345",
      pricing_source: "reported_cost",
    });
    expect((await receipt("unknown-zero")).status).toBe(404);
    const { rows } = await h.deps.database.pool.query("SELECT stage, reason FROM quarantine WHERE idempotency_key = $1", [
      "unknown-zero",
    ]);
    expect(rows).toEqual([{ stage: "worker", reason: "unpriced_model" }]);
    expect(h.alerts("inv_unpriced_model")).toEqual([
      expect.objectContaining({ idempotency_key: "unknown-zero", model: "acme/brand-new-model", level: 50 }),
    ]);
  });

  it("quarantines a call with no billing account and does not charge failed calls", async () => {
    await h.postCallback([
      litellmPayload("no-account-1", null, { end_user: "" }),
      litellmPayload("failed-call-1", "team-failure", { status: "failure" }),
    ]);
    await h.drainQueue();
    expect(await countRows("quarantine", "idempotency_key = $1 AND reason = $2", ["no-account-1", "no_billing_account"])).toBe(1);
    expect(await countRows("charge_receipts", "idempotency_key = ANY($1)", [["no-account-1", "failed-call-1"]])).toBe(0);
    expect(h.alerts("event_quarantined").some((line) => line.idempotency_key === "no-account-1")).toBe(true);
  });
});

describe("quarantine that keeps what PostgreSQL cannot", () => {
  it("quarantines hostile strings without failing the job, and charges the rest", async () => {
    const response = await h.postCallback([
      litellmPayload("hostile-good-1", "team-hostile"),
      // Unknown model at $0 (quarantined by the worker) whose name holds the text \u0000.
      litellmPayload("hostile-unpriced", "team-hostile", { model: "acme/unknown\\u0000", model_map_information: null, response_cost: 0 }),
      // Refused at the door: the chosen account is not storable; what is kept of it must be.
      litellmPayload("hostile-emoji", `a${"😀".repeat(600)}`),
      litellmPayload("hostile-lone", "team-\ud800"),
      litellmPayload("hostile-good-2", "team-hostile"),
    ]);
    expect(response.statusCode).toBe(207);
    expect(response.json().rejected.map((item: { reason: string }) => item.reason)).toEqual(["invalid_billing_account", "invalid_billing_account"]);
    await h.drainQueue();
    expect((await receipt("hostile-good-1")).status).toBe(200);
    expect((await receipt("hostile-good-2")).status).toBe(200);
    expect(await countRows("quarantine", "idempotency_key = ANY($1)", [["hostile-unpriced", "hostile-emoji", "hostile-lone"]])).toBe(3);
    expect(await h.deps.usageQueue.getJobCounts("failed", "delayed")).toEqual({ failed: 0, delayed: 0 });
  });

  it("bills a no_billing_account item to the account an operator assigns, once, by replay", async () => {
    await h.postCallback([litellmPayload("assign-1", null, { end_user: "" })]);
    await h.drainQueue();
    const [row] = await listQuarantined(h.deps.database.pool, { reason: "no_billing_account", limit: 1000 }).then((rows) =>
      rows.filter((candidate) => candidate.idempotencyKey === "assign-1"),
    );
    expect(row).toBeDefined();
    expect(await assignBillingAccount(h.deps.database.pool, row!.id, "team-assigned")).toBe(true);
    await replayQuarantined(h.deps.database.pool, h.deps.usageQueue, { billingAccountFrom: h.settings.billingAccountFrom, reason: "no_billing_account", waitMs: 0 });
    await h.drainQueue();
    expect((await receipt("assign-1")).body).toMatchObject({ billing_account_id: "team-assigned", charged_credits: 2250 });
    expect(await assignBillingAccount(h.deps.database.pool, row!.id, "team-other")).toBe(false);
  });

  it("keeps receipt conflicts (the same call with other usage) for inspection: replay neither resends nor re-alerts them", async () => {
    await h.postCallback([litellmPayload("conflict-1", "team-conflict")]);
    await h.drainQueue();
    await h.postCallback([litellmPayload("conflict-1", "team-conflict", { prompt_tokens: 11 })]);
    await h.drainQueue();
    const conflicts = () => h.alerts("receipt_conflict").filter((line) => line.idempotency_key === "conflict-1").length;
    expect(conflicts()).toBe(1);
    expect(await replayQuarantined(h.deps.database.pool, h.deps.usageQueue, { billingAccountFrom: h.settings.billingAccountFrom, reason: "receipt_conflict", waitMs: 0 })).toMatchObject({
      ran: true,
      report: { replayed: 0, refusedBeforeSending: 1, refusals: [expect.objectContaining({ idempotencyKey: "conflict-1", reason: "receipt_conflict" })] },
    });
    await replayQuarantined(h.deps.database.pool, h.deps.usageQueue, { billingAccountFrom: h.settings.billingAccountFrom, waitMs: 0 });
    await h.drainQueue();
    expect(conflicts()).toBe(1);
    expect((await receipt("conflict-1")).body.prompt_tokens).toBe(10);
    expect(await countRows("quarantine", "idempotency_key = $1 AND replayed_at IS NULL", ["conflict-1"])).toBe(1);
  });
});

describe("callback answers", () => {
  it("rejects a missing or wrong token with 401 and accepts either rotation token", async () => {
    const body = [litellmPayload("auth-1", "team-auth")];
    expect((await h.postCallback(body, { authorization: "" })).statusCode).toBe(401);
    const wrong = await h.postCallback(body, { authorization: "Bearer not-the-token-at-all" });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json()).toEqual({ error: { code: "unauthorized", message: expect.any(String) } });
    expect((await h.postCallback(body, { authorization: "Bearer test-ingest-token-0002" })).statusCode).toBe(202);
    // An ingest token never opens the account API.
    const account = await h.app.inject({
      method: "GET",
      url: "/v1/accounts/team-auth/credits/summary",
      headers: { authorization: "Bearer test-ingest-token-0001" },
    });
    expect(account.statusCode).toBe(401);
  });

  it("answers 400 for an empty batch or a body that is not JSON", async () => {
    for (const body of ["[]", "", "{not json"]) {
      const response = await h.postCallback(body);
      expect(response.statusCode).toBe(400);
      expect(response.json().error.code).toMatch(/empty_batch|invalid_json/);
    }
  });

  it("answers 207 naming each rejected item, queues the good ones and quarantines the rest", async () => {
    const good = litellmPayload("mixed-good", "team-mixed");
    const response = await h.postCallback([
      good,
      { ...good, id: "None", litellm_call_id: "" },
      { ...good, id: "mixed-bad-tokens", prompt_tokens: -5 },
      "not an object",
    ]);
    expect(response.statusCode).toBe(207);
    expect(response.json()).toMatchObject({
      accepted: 1,
      rejected: [
        { index: 1, id: null, reason: "no_idempotency_key" },
        { index: 2, id: "mixed-bad-tokens", reason: "invalid_payload", issues: [expect.objectContaining({ path: "prompt_tokens" })] },
        { index: 3, id: null, reason: "invalid_payload" },
      ],
    });
    await h.drainQueue();
    expect((await receipt("mixed-good")).status).toBe(200);
    const { rows } = await h.deps.database.pool.query(
      "SELECT stage, reason FROM quarantine WHERE idempotency_key = 'mixed-bad-tokens'",
    );
    expect(rows).toEqual([{ stage: "receiver", reason: "invalid_payload" }]);
    const keyless = "reason = 'no_idempotency_key' AND item->'metadata'->>'user_api_key_team_id' = 'team-mixed'";
    expect(await countRows("quarantine", keyless, [])).toBe(1);
  });

  it("keeps distinct refused non-objects as distinct rows, by digest and never by content", async () => {
    const before = await countRows("quarantine", "item ? 'not_an_object'", []);
    const response = await h.postCallback(["prompt text one", "prompt text two", 42]);
    expect(response.statusCode).toBe(207);
    await h.drainQueue();
    expect(await countRows("quarantine", "item ? 'not_an_object'", [])).toBe(before + 3);
    const { rows } = await h.deps.database.pool.query("SELECT item::text AS item FROM quarantine WHERE item ? 'not_an_object'");
    expect(JSON.stringify(rows)).not.toContain("prompt text");
  });

  it("refuses values PostgreSQL could not store at the door, item by item", async () => {
    const response = await h.postCallback([
      litellmPayload("huge-tokens", "team-limits", { prompt_tokens: 3_000_000_000 }),
      litellmPayload("huge-cost", "team-limits", { model: "acme/unknown", model_map_information: null, response_cost: 1e30 }),
      litellmPayload("nul\u0000key", "team-limits"),
      litellmPayload("within-limits", "team-limits"),
    ]);
    expect(response.statusCode).toBe(207);
    expect(response.json().rejected.map((item: { index: number }) => item.index)).toEqual([0, 1, 2]);
    await h.drainQueue();
    expect((await receipt("within-limits")).status).toBe(200);
  });

  it("isolates an event PostgreSQL refuses, charging the rest of its job", async () => {
    const events = ["poison-neighbour-1", "poison", "poison-neighbour-2"].map((key) => ({
      idempotencyKey: key,
      billingAccountId: "team-poison",
      status: "success" as const,
      cacheHit: false,
      model: "gpt-4o",
      modelGroup: null,
      modelMapKey: null,
      provider: null,
      // Over PostgreSQL's integer range: only a job written around the receiver can carry it.
      promptTokens: key === "poison" ? 3_000_000_000 : 1,
      completionTokens: 1,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      reasoningTokens: 0,
      reportedCostUsd: null,
      eventTime: null,
    }));
    await enqueueCallbackItems(h.deps.usageQueue, { events, rejected: [] });
    await h.drainQueue();
    expect((await receipt("poison-neighbour-1")).body.charged_credits).toBe(125);
    expect((await receipt("poison-neighbour-2")).body.charged_credits).toBe(125);
    expect((await receipt("poison")).status).toBe(404);
    expect(await countRows("quarantine", "idempotency_key = 'poison' AND reason = 'unrecordable'", [])).toBe(1);
    expect(await h.deps.usageQueue.getJobCounts("failed")).toEqual({ failed: 0 });
  });

  it("charges every LiteLLM log format: ndjson as LiteLLM labels it and as application/x-ndjson", async () => {
    const lines = (prefix: string) =>
      ["", JSON.stringify(litellmPayload(`${prefix}-1`, "team-formats")), "", JSON.stringify(litellmPayload(`${prefix}-2`, "team-formats")), ""].join("\n");
    expect((await h.postCallback(lines("ndjson-json"))).statusCode).toBe(202);
    expect((await h.postCallback(lines("ndjson-x"), { "content-type": "application/x-ndjson" })).statusCode).toBe(202);
    await h.drainQueue();
    for (const key of ["ndjson-json-1", "ndjson-json-2", "ndjson-x-1", "ndjson-x-2"]) {
      expect((await receipt(key)).body.charged_credits).toBe(2250);
    }
  });

  it("treats LiteLLM's cache-hit ids as calls of their own", async () => {
    const original = litellmPayload("chatcmpl-abc", "team-cache-ids");
    const cached = litellmPayload("chatcmpl-abc_cache_hit1737710446.85", "team-cache-ids", { cache_hit: true });
    await h.postCallback([original, cached]);
    await h.drainQueue();
    expect((await receipt("chatcmpl-abc")).body).toMatchObject({ charged_credits: 2250, pricing_source: "price_book" });
    expect((await receipt("chatcmpl-abc_cache_hit1737710446.85")).body).toMatchObject({ charged_credits: 0, pricing_source: "cache_hit" });
  });

  it("takes a single object as well as an array", async () => {
    const response = await h.postCallback(litellmPayload("single-1", "team-single"));
    expect(response.statusCode).toBe(202);
    await h.drainQueue();
    expect((await receipt("single-1")).status).toBe(200);
  });

  it("keys on id before litellm_call_id, which a caller can set through a header", async () => {
    await h.postCallback([{ ...litellmPayload("provider-id", "team-keys"), litellm_call_id: "litellm-call-1" }]);
    await h.drainQueue();
    expect((await receipt("provider-id")).status).toBe(200);
    expect((await receipt("litellm-call-1")).status).toBe(404);
  });

  it("accepts LiteLLM's example exactly as sent, and quarantines it for having no billing account", async () => {
    const response = await h.postCallback([STANDARD_LOGGING_PAYLOAD]);
    expect(response.statusCode).toBe(202);
    await h.drainQueue();
    const key = String(STANDARD_LOGGING_PAYLOAD.id);
    expect(await countRows("quarantine", "idempotency_key = $1 AND reason = $2", [key, "no_billing_account"])).toBe(1);
  });
});

describe("account API", () => {
  it("grants once per reference, answers 200 for a repeat and 409 for another amount", async () => {
    const first = await h.admin("POST", "/v1/accounts/team-grant/grants", { credits: 5000000, reference: "topup-123", reason: "purchase" });
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ grant: { credits: 5000000, reference: "topup-123" }, balance_credits: 5000000 });
    const again = await h.admin("POST", "/v1/accounts/team-grant/grants", { credits: 5000000, reference: "topup-123", reason: "purchase" });
    expect(again.statusCode).toBe(200);
    expect(again.json().grant.id).toBe(first.json().grant.id);
    expect(again.json().balance_credits).toBe(5000000);
    const conflict = await h.admin("POST", "/v1/accounts/team-grant/grants", { credits: 1, reference: "topup-123" });
    expect(conflict.statusCode).toBe(409);
    // A conflicting reference for another account leaves no account behind.
    expect((await h.admin("POST", "/v1/accounts/team-phantom/grants", { credits: 5000000, reference: "topup-123" })).statusCode).toBe(409);
    expect((await summary("team-phantom")).status).toBe(404);
    expect((await summary("team-grant")).body).toMatchObject({ balance_credits: 5000000, status: "ok" });
    const invalid = await h.admin("POST", "/v1/accounts/team-grant/grants", { credits: -5, reference: "x" });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json().error.code).toBe("invalid_request");
  });

  it("answers 404 for an account it has never seen", async () => {
    expect((await summary("nobody")).status).toBe(404);
    expect((await h.admin("GET", "/v1/accounts/nobody/ledger")).statusCode).toBe(404);
    expect((await h.admin("GET", "/v1/accounts/nobody/invoice?period=2026-01")).statusCode).toBe(404);
  });

  it("pages the ledger newest first with a cursor", async () => {
    for (const n of [1, 2, 3]) await h.admin("POST", "/v1/accounts/team-pages/grants", { credits: n, reference: `pages-${n}` });
    const first = (await h.admin("GET", "/v1/accounts/team-pages/ledger?limit=2")).json();
    expect(first.entries.map((entry: { reference: string }) => entry.reference)).toEqual(["pages-3", "pages-2"]);
    const second = (await h.admin("GET", `/v1/accounts/team-pages/ledger?limit=2&cursor=${first.next_cursor}`)).json();
    expect(second.entries.map((entry: { reference: string }) => entry.reference)).toEqual(["pages-1"]);
    expect(second.next_cursor).toBeNull();
  });

  it("builds the invoice from the ledger so that it ties out", async () => {
    await h.admin("POST", "/v1/accounts/team-invoice/grants", { credits: 10000, reference: "invoice-topup" });
    await h.postCallback([litellmPayload("invoice-1", "team-invoice"), litellmPayload("invoice-2", "team-invoice")]);
    await h.drainQueue();
    const period = new Date().toISOString().slice(0, 7);
    const invoice = (await h.admin("GET", `/v1/accounts/team-invoice/invoice?period=${period}`)).json();
    expect(invoice).toMatchObject({
      period,
      opening_balance: 0,
      credits_granted: 10000,
      credits_used: 4500,
      receipt_count: 2,
      closing_balance: 5500,
    });
    expect((await summary("team-invoice")).body.balance_credits).toBe(invoice.closing_balance);
    expect((await h.admin("GET", "/v1/accounts/team-invoice/invoice?period=2026-13")).statusCode).toBe(400);
  });

  it("ties invoices out across a month boundary: each closing is the next opening", async () => {
    const account = "team-months";
    await h.admin("POST", `/v1/accounts/${account}/grants`, { credits: 10000, reference: "months-january" });
    await h.postCallback([litellmPayload("months-1", account), litellmPayload("months-2", account)]);
    await h.drainQueue();
    await h.admin("POST", `/v1/accounts/${account}/grants`, { credits: 3000, reference: "months-february" });
    await h.postCallback([litellmPayload("months-3", account)]);
    await h.drainQueue();
    // Posting times moved to either side of 2026-02-01T00:00:00Z, in ledger order, and the chain
    // rebuilt over them (the service itself can only post at the database's clock).
    await rewriteBooks(h.deps.database.pool, [
      [
        `UPDATE ledger_entries SET created_at = CASE reference
           WHEN 'months-january' THEN timestamptz '2026-01-10T00:00:00Z'
           WHEN 'months-1' THEN timestamptz '2026-01-31T23:59:59.999999Z'
           WHEN 'months-2' THEN timestamptz '2026-02-01T00:00:00Z'
           WHEN 'months-february' THEN timestamptz '2026-02-15T00:00:00Z'
           ELSE timestamptz '2026-03-01T00:00:00Z' END
         WHERE billing_account_id = $1`,
        [account],
      ],
      rechain(account),
    ]);
    const invoice = async (period: string) => (await h.admin("GET", `/v1/accounts/${account}/invoice?period=${period}`)).json();
    const [january, february, march] = [await invoice("2026-01"), await invoice("2026-02"), await invoice("2026-03")];
    expect(january).toMatchObject({ opening_balance: 0, credits_granted: 10000, credits_used: 2250, receipt_count: 1, closing_balance: 7750 });
    expect(february).toMatchObject({ opening_balance: 7750, credits_granted: 3000, credits_used: 2250, receipt_count: 1, closing_balance: 8500 });
    expect(march).toMatchObject({ opening_balance: 8500, credits_granted: 0, credits_used: 2250, receipt_count: 1, closing_balance: 6250 });
    expect((await summary(account)).body.balance_credits).toBe(march.closing_balance);
  });
});

describe("operator routes", () => {
  it("answers healthz and readyz while PostgreSQL and Redis answer", async () => {
    expect((await h.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    const ready = await h.app.inject({ method: "GET", url: "/readyz" });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().checks).toEqual({ postgres: "ok", redis: "ok" });
  });
});

describe("logs", () => {
  // Last in the file, so it sees every line the tests above made the service write.
  it("never hold a bearer token, right or wrong", () => {
    const logged = JSON.stringify(h.logs);
    expect(h.logs.length).toBeGreaterThan(50);
    for (const token of ["test-ingest-token-0001", "test-ingest-token-0002", "test-admin-token-0001", "not-the-token-at-all"]) {
      expect(logged).not.toContain(token);
    }
  });
});
