import { describe, expect, it } from "vitest";
import { type Harness, useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";

const trusted = useServiceHarness();
// A deployment whose every key holder is a trusted backend may let callers name the account.
const optedIn = useServiceHarness({ BILLING_ACCOUNT_FROM: "spend_logs_metadata,team" });

const forged = (id: string) =>
  litellmPayload(id, "team-a", {
    prompt_tokens: 1000,
    metadata: { spend_logs_metadata: { billing_account_id: "victim" } },
  });

async function receipt(h: Harness, key: string) {
  const response = await h.admin("GET", `/v1/receipts/${encodeURIComponent(key)}`);
  return { status: response.statusCode, body: response.json() };
}

async function overruledCount(h: Harness): Promise<number> {
  const metrics = (await h.app.inject({ method: "GET", url: "/metrics" })).body;
  return Number(/^spend_ingest_billing_account_overruled_total (\d+)$/m.exec(metrics)?.[1] ?? "NaN");
}

describe("who pays", () => {
  it("by default, a caller's spend_logs_metadata cannot pick the payer: the key's team pays and the receipt says so", async () => {
    expect((await trusted.postCallback([forged("forged-1")])).statusCode).toBe(202);
    await trusted.drainQueue();
    expect(await receipt(trusted, "forged-1")).toMatchObject({
      status: 200,
      body: { billing_account_id: "team-a", claimed_billing_account_id: "victim" },
    });
    expect((await trusted.admin("GET", "/v1/accounts/victim/credits/summary")).statusCode).toBe(404);
    expect(await overruledCount(trusted)).toBe(1);
  });

  it("by default, an end user named by the caller pays nothing: with no key-derived account the call waits in quarantine", async () => {
    const endUserOnly = litellmPayload("end-user-only", null, { end_user: "victim", metadata: { user_api_key_end_user_id: "victim" } });
    expect((await trusted.postCallback([endUserOnly])).statusCode).toBe(202);
    await trusted.drainQueue();
    expect((await receipt(trusted, "end-user-only")).status).toBe(404);
    const { rows } = await trusted.deps.database.pool.query("SELECT reason FROM quarantine WHERE idempotency_key = 'end-user-only'");
    expect(rows).toEqual([{ reason: "no_billing_account" }]);
  });

  it("with BILLING_ACCOUNT_FROM listing it first, spend_logs_metadata is honoured", async () => {
    expect((await optedIn.postCallback([forged("opted-1")])).statusCode).toBe(202);
    await optedIn.drainQueue();
    expect(await receipt(optedIn, "opted-1")).toMatchObject({
      status: 200,
      body: { billing_account_id: "victim", claimed_billing_account_id: null },
    });
    expect(await overruledCount(optedIn)).toBe(0);
  });
});

describe("one canonical form for ids and references, at ingest and in the account API", () => {
  const h = trusted;
  const grant = (account: string, body: unknown) =>
    h.app.inject({
      method: "POST",
      url: `/v1/accounts/${encodeURIComponent(account)}/grants`,
      headers: { authorization: `Bearer ${h.settings.adminToken}`, "content-type": "application/json" },
      payload: typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    });

  it("serves every route for an id of the full length that ingest accepts, and refuses one longer with 400", async () => {
    const longest = "a".repeat(512);
    expect((await grant(longest, { credits: 5, reference: "long-1" })).statusCode).toBe(201);
    for (const route of ["credits/summary", "ledger", "invoice?period=2026-11"]) {
      expect((await h.admin("GET", `/v1/accounts/${longest}/${route}`)).statusCode).toBe(200);
    }
    // Percent-encoded, the same id is nine times longer in the path, and still served.
    const wide = "中".repeat(512);
    expect((await grant(wide, { credits: 5, reference: "wide-1" })).statusCode).toBe(201);
    expect((await h.admin("GET", `/v1/accounts/${encodeURIComponent(wide)}/credits/summary`)).statusCode).toBe(200);
    const tooLong = await grant("a".repeat(513), { credits: 5, reference: "long-2" });
    expect(tooLong.statusCode).toBe(400);
    expect(tooLong.json()).toMatchObject({ error: { issues: [{ path: "id" }] } });
  });

  it("makes NFC and NFD spellings one account and one reference, and never trims", async () => {
    const nfd = "Jose\u0301";
    const nfc = "Jos\u00e9";
    expect((await grant(nfd, { credits: 7, reference: `ref-${nfd}` })).statusCode).toBe(201);
    const again = await grant(nfc, { credits: 7, reference: `ref-${nfc}` });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ grant: { billing_account_id: nfc }, balance_credits: 7 });

    // A team id with a trailing space is that id at ingest and in the API alike: one account.
    expect((await h.postCallback([litellmPayload("padded-1", "X ")])).statusCode).toBe(202);
    await h.drainQueue();
    const padded = await grant("X ", { credits: 10_000, reference: "padded-topup" });
    expect(padded.json()).toMatchObject({ grant: { billing_account_id: "X " }, balance_credits: 10_000 - 2_250 });
    expect((await h.admin("GET", "/v1/accounts/X/credits/summary")).statusCode).toBe(404);
  });

  it("answers 400 for bytes that are not UTF-8 and numbers JSON would round, rather than store what was not sent", async () => {
    const notUtf8 = Buffer.concat([Buffer.from('{"credits":1,"reference":"bytes-'), Buffer.from([0xff]), Buffer.from('"}')]);
    const cases: Array<[unknown, string]> = [
      [notUtf8, ""],
      ['{"credits":4503599627370496.5,"reference":"half-past-2^52"}', "credits"],
      ['{"credits":9007199254740990.9,"reference":"rounds-to-max"}', "credits"],
      ['{"credits":1e-400,"reference":"underflow"}', "credits"],
      ['{"credits":1,"reference":"priority-rounded","priority":50.000000000000001}', "priority"],
      ['{"credits":1,"reference":"proto","__proto__":{"credits":5}}', "__proto__"],
    ];
    for (const [body, field] of cases) {
      const answer = await grant("exact-1", body);
      expect(answer.statusCode, String(body)).toBe(400);
      expect(answer.json().error).toMatchObject({ code: "invalid_request", issues: [{ path: field }] });
    }
    expect((await h.admin("GET", "/v1/accounts/exact-1/credits/summary")).statusCode).toBe(404);
    // What JSON writes exactly is taken in any of its spellings.
    for (const [credits, reference] of [["1e3", "exponent"], ["1000.000", "trailing-zeros"], ["100000e-2", "negative-exponent"]]) {
      const answer = await grant("exact-2", `{"credits":${credits},"reference":"${reference}"}`);
      expect(answer.statusCode, credits).toBe(201);
      expect(answer.json().grant.credits).toBe(1000);
    }
  });

  it("answers 400 naming the field for text that cannot be stored, never 500 and never altered", async () => {
    const cases: Array<[string, unknown, string]> = [
      ["nul-account\u0000", { credits: 1, reference: "r-nul-acct" }, "id"],
      ["ok-1", '{"credits":1,"reference":"lone-\\ud800"}', "reference"],
      ["ok-2", '{"credits":1,"reference":"lone-\\udfff"}', "reference"],
      ["ok-3", { credits: 1, reference: "nul-\u0000" }, "reference"],
      ["ok-4", { credits: 1, reference: "esc-\u001b[2J" }, "reference"],
      ["ok-5", { credits: 1, reference: "r-5", reason: "nul\u0000" }, "reason"],
      ["ok-6", { credits: 1, reference: " " }, "reference"],
    ];
    for (const [account, body, field] of cases) {
      const answer = await grant(account, body);
      expect(answer.statusCode, `${account} ${JSON.stringify(body)}`).toBe(400);
      expect(answer.json().error.issues[0].path).toBe(field);
      expect(answer.json().error.message).toContain(field);
    }
    // Two references that differ only in their lone surrogate were once stored alike; now neither is stored.
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM grants WHERE reference LIKE 'lone-%'");
    expect(rows[0].n).toBe(0);

    for (const url of [
      "/v1/receipts/%00",
      "/v1/receipts/a%1B%5B2Jb",
      "/v1/accounts/%00/credits/summary",
      "/v1/accounts/a%0Ab/ledger",
      "/v1/accounts/%ED%A0%80/credits/summary",
      `/v1/receipts/${"k".repeat(513)}`,
      "/v1/accounts/a/invoice?period=0000-01",
      "/v1/accounts/a/invoice?period=9999-12",
      "/v1/accounts/a/invoice?period=2026-13",
    ]) {
      const answer = await h.admin("GET", url);
      expect(answer.statusCode, url).toBe(400);
      expect(answer.json()).toHaveProperty("error.code");
    }
  });
});
