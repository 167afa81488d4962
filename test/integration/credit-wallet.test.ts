import { describe, expect, it } from "vitest";
import { expireCredits } from "../../src/books/expire-credits.js";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { recordUsageBatch } from "../../src/books/record-usage.js";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";
import { useServiceHarness } from "../support/harness.js";
import { pricedUsage } from "../support/usage-events.js";

// No worker: the expiry sweep runs here, by the test, with the clock it passes.
const h = useServiceHarness({}, { worker: false });
const DAY_MS = 86_400_000;
const inDays = (days: number) => new Date(Date.now() + days * DAY_MS).toISOString();

async function grant(account: string, reference: string, credits: number, terms: { expires_at?: string; priority?: number } = {}) {
  const answer = await h.admin("POST", `/v1/accounts/${account}/grants`, { credits, reference, ...terms });
  expect(answer.statusCode, answer.body).toBe(201);
  return answer.json();
}

async function charge(account: string, ...calls: Array<[key: string, credits: number]>) {
  await recordUsageBatch(h.deps.database.pool, {
    charges: calls.map(([key, credits]) => pricedUsage(key, account, credits)),
    quarantines: [],
    priceBookHash: "test",
    lowBalanceThresholds: [],
    enforcement: ENFORCEMENT_OFF,
  });
}

/** Each grant's bucket, by grant reference: what it started with and what is left. */
async function bucketsOf(account: string): Promise<Record<string, { credits: number; remaining: number }>> {
  const { rows } = await h.deps.database.pool.query(
    `SELECT g.reference, b.credits::int AS credits, b.remaining_credits::int AS remaining
     FROM credit_buckets b JOIN grants g ON b.source = 'grant' AND g.id = b.source_id WHERE b.billing_account_id = $1`,
    [account],
  );
  return Object.fromEntries(rows.map((row) => [row.reference, { credits: row.credits, remaining: row.remaining }]));
}

/** What the entry of a charge drew, bucket by bucket (grant reference → credits). */
async function allocationsOf(idempotencyKey: string): Promise<Record<string, number>> {
  const { rows } = await h.deps.database.pool.query(
    `SELECT g.reference, a.credits::int AS credits FROM bucket_allocations a
     JOIN ledger_entries l ON l.id = a.ledger_entry_id JOIN credit_buckets b ON b.id = a.bucket_id JOIN grants g ON g.id = b.source_id
     WHERE l.reference = $1`,
    [idempotencyKey],
  );
  return Object.fromEntries(rows.map((row) => [row.reference, row.credits]));
}

describe("credit buckets: consumption order and allocations", () => {
  it("lower priority first, then soonest expiry, never-expiring last, ties to the oldest; each charge keeps its allocations", async () => {
    const account = "wallet-order";
    await grant(account, "order-evergreen-old", 100);
    await grant(account, "order-evergreen-new", 100);
    await grant(account, "order-later", 100, { expires_at: inDays(20) });
    await grant(account, "order-sooner", 100, { expires_at: inDays(10) });
    // Priority beats expiry: evergreen, but priority 10.
    await grant(account, "order-first", 100, { priority: 10 });
    await charge(account, ["order-call-1", 150], ["order-call-2", 200]);
    expect(await allocationsOf("order-call-1")).toEqual({ "order-first": 100, "order-sooner": 50 });
    expect(await allocationsOf("order-call-2")).toEqual({ "order-sooner": 50, "order-later": 100, "order-evergreen-old": 50 });
    expect(await bucketsOf(account)).toEqual({
      "order-first": { credits: 100, remaining: 0 },
      "order-sooner": { credits: 100, remaining: 0 },
      "order-later": { credits: 100, remaining: 0 },
      "order-evergreen-old": { credits: 100, remaining: 50 },
      "order-evergreen-new": { credits: 100, remaining: 100 },
    });
    // Past the buckets the rest is debt, which no allocation stands for.
    await charge(account, ["order-call-3", 200]);
    expect(await allocationsOf("order-call-3")).toEqual({ "order-evergreen-old": 50, "order-evergreen-new": 100 });
    const summary = (await h.admin("GET", `/v1/accounts/${account}/credits/summary`)).json();
    expect(summary.balance_credits).toBe(-50);
  });

  it("a charge on an account with no live credit writes no allocation", async () => {
    await charge("wallet-unfunded", ["unfunded-call-1", 40], ["unfunded-call-2", 60]);
    const { rows } = await h.deps.database.pool.query(
      "SELECT count(*)::int AS n FROM bucket_allocations a JOIN ledger_entries l ON l.id = a.ledger_entry_id WHERE l.billing_account_id = 'wallet-unfunded'",
    );
    expect(rows[0].n).toBe(0);
  });
});

describe("debt is settled first", () => {
  it("a grant on an account in debt pays the debt; only the rest becomes a live bucket", async () => {
    const account = "wallet-debt";
    await charge(account, ["debt-call-1", 500]);
    // Smaller than the debt: all of it pays debt, no bucket.
    await grant(account, "debt-grant-small", 200, { expires_at: inDays(1) });
    expect(await bucketsOf(account)).toEqual({});
    const answer = await grant(account, "debt-grant-big", 1000, { expires_at: inDays(1) });
    expect(answer.balance_credits).toBe(700);
    expect(answer.grant).toMatchObject({ credits: 1000, priority: 50, expires_at: expect.any(String) });
    expect(await bucketsOf(account)).toEqual({ "debt-grant-big": { credits: 700, remaining: 700 } });
    const summary = (await h.admin("GET", `/v1/accounts/${account}/credits/summary`)).json();
    expect(summary).toMatchObject({ balance_credits: 700, available_credits: 700, debt_credits: 0, next_expiry: { reference: "debt-grant-big", remaining_credits: 700 } });
  });
});

describe("grant terms", () => {
  it("expires_at and priority are checked, and 400 names the field", async () => {
    const refused = [
      [{ expires_at: new Date(Date.now() - 1000).toISOString() }, /^expires_at: must be in the future/],
      [{ expires_at: "tomorrow" }, /^expires_at: /],
      [{ expires_at: "2026-01-01T00:00:00" }, /^expires_at: /],
      [{ expires_at: inDays(365 * 101) }, /^expires_at: must be within 100 years/],
      [{ priority: 101 }, /^priority: /],
      [{ priority: -1 }, /^priority: /],
      [{ priority: 1.5 }, /^priority: /],
    ] as const;
    for (const [terms, message] of refused) {
      const answer = await h.admin("POST", "/v1/accounts/wallet-terms/grants", { credits: 10, reference: "terms-refused", ...terms });
      expect(answer.statusCode, JSON.stringify(terms)).toBe(400);
      expect(answer.json().error.message).toMatch(message);
    }
  });

  it("the same reference with another expiry or priority is a conflict; the same terms again answer 200", async () => {
    const expiresAt = inDays(30);
    await grant("wallet-terms", "terms-once", 10, { expires_at: expiresAt, priority: 20 });
    const again = await h.admin("POST", "/v1/accounts/wallet-terms/grants", { credits: 10, reference: "terms-once", expires_at: expiresAt, priority: 20 });
    expect(again.statusCode).toBe(200);
    for (const terms of [{ expires_at: inDays(31), priority: 20 }, { expires_at: expiresAt }, { priority: 20 }]) {
      const other = await h.admin("POST", "/v1/accounts/wallet-terms/grants", { credits: 10, reference: "terms-once", ...terms });
      expect(other.statusCode, JSON.stringify(terms)).toBe(409);
    }
  });
});

describe("reconcile and live credit", () => {
  it("fails when a bucket's remaining credits are edited by hand", async () => {
    const account = "wallet-edited";
    await grant(account, "edited-grant", 1000);
    await charge(account, ["edited-call", 300]);
    const { pool } = h.deps.database;
    const { rows } = await pool.query("SELECT id FROM credit_buckets WHERE billing_account_id = $1", [account]);
    await pool.query("UPDATE credit_buckets SET remaining_credits = 900 WHERE id = $1", [rows[0].id]);
    try {
      expect((await reconcileLedger(pool)).drifts).toEqual([
        { kind: "live_credit_mismatch", billingAccountId: account, balance: "700", liveCredits: "900" },
        { kind: "bucket_mismatch", billingAccountId: account, bucketId: rows[0].id, credits: "1000", remaining: "900", allocated: "300", expired: false },
      ]);
    } finally {
      await pool.query("UPDATE credit_buckets SET remaining_credits = 700 WHERE id = $1", [rows[0].id]);
    }
  });

  it("fails when an allocation is moved onto another account's bucket", async () => {
    await grant("wallet-own", "own-grant", 1000);
    await grant("wallet-other", "other-grant", 1000);
    await charge("wallet-own", ["own-call", 300]);
    const { pool } = h.deps.database;
    const bucketOf = async (account: string) =>
      (await pool.query("SELECT id FROM credit_buckets WHERE billing_account_id = $1", [account])).rows[0].id as string;
    const [own, other] = [await bucketOf("wallet-own"), await bucketOf("wallet-other")];
    // The other bucket is made to look spent by the charge: its remaining credits agree with the
    // allocation now pointing at it, yet the allocation is not its account's.
    await pool.query("UPDATE bucket_allocations SET bucket_id = $2 WHERE bucket_id = $1", [own, other]);
    await pool.query("UPDATE credit_buckets SET remaining_credits = 700 WHERE id = $1", [other]);
    try {
      expect((await reconcileLedger(pool)).drifts).toEqual(expect.arrayContaining([
        { kind: "bucket_mismatch", billingAccountId: "wallet-own", bucketId: own, credits: "1000", remaining: "700", allocated: "0", expired: false },
        { kind: "bucket_mismatch", billingAccountId: "wallet-other", bucketId: other, credits: "1000", remaining: "700", allocated: "0", expired: false },
      ]));
    } finally {
      await pool.query("UPDATE bucket_allocations SET bucket_id = $1 WHERE bucket_id = $2", [own, other]);
      await pool.query("UPDATE credit_buckets SET remaining_credits = 1000 WHERE id = $1", [other]);
    }
  });

  it("no index on credit_buckets reads remaining_credits, so a charge updates its buckets heap-only", async () => {
    const { rows } = await h.deps.database.pool.query<{ definition: string }>(
      "SELECT pg_get_indexdef(indexrelid) AS definition FROM pg_index WHERE indrelid = 'credit_buckets'::regclass",
    );
    expect(rows.length).toBeGreaterThan(1);
    expect(rows.filter((row) => row.definition.includes("remaining_credits"))).toEqual([]);
  });
});

const HOUR_MS = 3_600_000;
const sweepAt = (offsetMs: number, lowBalanceThresholds: bigint[] = []) =>
  expireCredits(h.deps.database.pool, {
    now: new Date(Date.now() + offsetMs),
    limit: 100,
    expiringWithinMs: 7 * DAY_MS,
    lowBalanceThresholds,
    enforcement: ENFORCEMENT_OFF,
  });

/** The alerts queued for an account, in order: event and the fields named. */
async function alertsOf(account: string, events: string[]): Promise<Array<Record<string, unknown>>> {
  const { rows } = await h.deps.database.pool.query(
    `SELECT a.alert->>'event' AS event, a.alert->'fields' AS fields
       FROM alert_outbox o CROSS JOIN LATERAL jsonb_array_elements(o.alerts) WITH ORDINALITY a(alert, n)
      WHERE a.alert->'fields'->>'billing_account_id' = $1 AND a.alert->>'event' = ANY($2::text[]) ORDER BY o.id, a.n`,
    [account, events],
  );
  return rows.map((row) => ({ event: row.event, ...row.fields }));
}

async function ledgerOf(account: string) {
  const { rows } = await h.deps.database.pool.query(
    "SELECT kind, amount_credits::int AS amount, balance_after::int AS after, reference FROM ledger_entries WHERE billing_account_id = $1 ORDER BY seq",
    [account],
  );
  return rows;
}

describe("expiry", () => {
  it("takes what is left of an expired bucket exactly once: one expiry entry, credits_expired once", async () => {
    const account = "wallet-expiry";
    await grant(account, "expiry-a", 1000, { expires_at: new Date(Date.now() + HOUR_MS).toISOString() });
    await grant(account, "expiry-b", 1000);
    await charge(account, ["expiry-call", 300]);
    expect(await allocationsOf("expiry-call")).toEqual({ "expiry-a": 300 });
    // Not yet due.
    await sweepAt(HOUR_MS / 2);
    expect((await ledgerOf(account)).map((entry) => entry.kind)).toEqual(["grant", "grant", "charge"]);
    await sweepAt(2 * HOUR_MS);
    await sweepAt(3 * HOUR_MS);
    expect((await ledgerOf(account)).at(-1)).toEqual({ kind: "expiry", amount: -700, after: 1000, reference: "expiry-a" });
    expect((await ledgerOf(account)).filter((entry) => entry.kind === "expiry")).toHaveLength(1);
    expect(await bucketsOf(account)).toEqual({ "expiry-a": { credits: 1000, remaining: 0 }, "expiry-b": { credits: 1000, remaining: 1000 } });
    expect(await alertsOf(account, ["credits_expired"])).toEqual([
      expect.objectContaining({ event: "credits_expired", reference: "expiry-a", expired_credits: 700, balance_after: 1000 }),
    ]);
    const summary = (await h.admin("GET", `/v1/accounts/${account}/credits/summary`)).json();
    expect(summary).toMatchObject({
      balance_credits: 1000,
      available_credits: 1000,
      debt_credits: 0,
      grants: [{ reference: "expiry-b", source: "grant", remaining_credits: 1000, expires_at: null, priority: 50 }],
      next_expiry: null,
    });
    expect(summary.recent[0]).toMatchObject({ kind: "expiry", amount_credits: -700, reference: "expiry-a" });
    // Every entry of the account was posted in the month of its expiry entry, unless the test straddles a month's edge.
    const { rows } = await h.deps.database.pool.query(
      "SELECT DISTINCT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS period FROM ledger_entries WHERE billing_account_id = $1",
      [account],
    );
    if (rows.length === 1) {
      const invoice = (await h.admin("GET", `/v1/accounts/${account}/invoice?period=${rows[0].period}`)).json();
      expect(invoice).toMatchObject({ opening_balance: 0, credits_granted: 2000, credits_used: 300, credits_expired: 700, closing_balance: 1000 });
    }
  });

  it("a bucket left after paying debt expires to 0, never back into the debt; balance alerts apply", async () => {
    const account = "wallet-debt-expiry";
    await charge(account, ["debt-expiry-call", 500]);
    await grant(account, "debt-expiry-grant", 1000, { expires_at: new Date(Date.now() + HOUR_MS).toISOString() });
    await sweepAt(2 * HOUR_MS, [300n]);
    expect((await ledgerOf(account)).map(({ kind, amount, after }) => [kind, amount, after])).toEqual([
      ["charge", -500, -500],
      ["grant", 1000, 500],
      ["expiry", -500, 0],
    ]);
    expect(await alertsOf(account, ["balance_depleted", "low_balance", "inv_post_call_negative_balance", "credits_expired"])).toEqual([
      expect.objectContaining({ event: "inv_post_call_negative_balance", idempotency_key: "debt-expiry-call" }),
      expect.objectContaining({ event: "credits_expired", expired_credits: 500, balance_after: 0 }),
      expect.objectContaining({ event: "balance_depleted", entry_kind: "expiry", balance_before: 500, balance_after: 0 }),
      expect.objectContaining({ event: "low_balance", entry_kind: "expiry", threshold: 300 }),
    ]);
  });

  it("credits_expiring once per bucket when it enters the window with credits left", async () => {
    const account = "wallet-expiring";
    await grant(account, "expiring-soon", 100, { expires_at: new Date(Date.now() + 3 * DAY_MS).toISOString() });
    await grant(account, "expiring-later", 100, { expires_at: new Date(Date.now() + 30 * DAY_MS).toISOString() });
    await grant(account, "expiring-spent", 100, { expires_at: new Date(Date.now() + 2 * DAY_MS).toISOString() });
    await charge(account, ["expiring-call", 100]);
    await sweepAt(0);
    await sweepAt(HOUR_MS);
    const soon = await alertsOf(account, ["credits_expiring"]);
    expect(soon).toEqual([expect.objectContaining({ reference: "expiring-soon", remaining_credits: 100 })]);
    await sweepAt(25 * DAY_MS);
    expect((await alertsOf(account, ["credits_expiring"])).map((alert) => alert.reference)).toEqual(["expiring-soon", "expiring-later"]);
  });
});

describe("manual debits", () => {
  it("a debit without a reason that says something is 400 naming reason, and nothing moves", async () => {
    const account = "wallet-debit-blank";
    for (const reason of ["", "   ", "\t\n"]) {
      const answer = await h.admin("POST", `/v1/accounts/${account}/debits`, { credits: 10, reference: "debit-blank", reason });
      expect(answer.statusCode, answer.body).toBe(400);
      expect(answer.json().error.message, answer.body).toMatch(/^reason: is empty/);
    }
    expect(await ledgerOf(account)).toEqual([]);
  });

  it("a debit on an empty account goes negative with inv_post_call_negative_balance; the same again is 200, another body 409", async () => {
    const account = "wallet-debit-empty";
    const body = { credits: 250, reference: "debit-seat-fee", reason: "seat fee" };
    const first = await h.admin("POST", `/v1/accounts/${account}/debits`, body);
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ debit: { credits: 250, reference: "debit-seat-fee", reason: "seat fee" }, balance_credits: -250 });
    expect((await h.admin("POST", `/v1/accounts/${account}/debits`, body)).statusCode).toBe(200);
    for (const other of [{ ...body, credits: 251 }, { ...body, reason: "settlement" }]) {
      const answer = await h.admin("POST", `/v1/accounts/${account}/debits`, other);
      expect(answer.statusCode).toBe(409);
      expect(answer.json().error.code).toBe("debit_reference_conflict");
    }
    expect((await h.admin("POST", "/v1/accounts/wallet-debit-other/debits", body)).statusCode).toBe(409);
    expect(await ledgerOf(account)).toEqual([{ kind: "debit", amount: -250, after: -250, reference: "debit-seat-fee" }]);
    const summary = (await h.admin("GET", `/v1/accounts/${account}/credits/summary`)).json();
    expect(summary).toMatchObject({ balance_credits: -250, available_credits: 0, debt_credits: 250, grants: [], next_expiry: null });
    expect(h.alerts("inv_post_call_negative_balance").filter((line) => line.billing_account_id === account)).toEqual([
      expect.objectContaining({ entry_kind: "debit", reference: "debit-seat-fee", debited_credits: 250, balance_before: 0, balance_after: -250, crossed_zero: true }),
    ]);
  });

  it("a debit draws live buckets in consumption order, and crossing zero raises balance_depleted", async () => {
    const account = "wallet-debit-funded";
    await grant(account, "debit-funded-evergreen", 100);
    await grant(account, "debit-funded-soon", 100, { expires_at: inDays(5) });
    const answer = await h.admin("POST", `/v1/accounts/${account}/debits`, { credits: 150, reference: "debit-funded-1", reason: "settlement" });
    expect(answer.json().balance_credits).toBe(50);
    expect(await allocationsOf("debit-funded-1")).toEqual({ "debit-funded-soon": 100, "debit-funded-evergreen": 50 });
    await h.admin("POST", `/v1/accounts/${account}/debits`, { credits: 80, reference: "debit-funded-2", reason: "settlement" });
    expect(h.alerts("balance_depleted").filter((line) => line.billing_account_id === account)).toEqual([
      expect.objectContaining({ entry_kind: "debit", reference: "debit-funded-2", balance_before: 50, balance_after: -30 }),
    ]);
    expect(await bucketsOf(account)).toEqual({
      "debit-funded-evergreen": { credits: 100, remaining: 0 },
      "debit-funded-soon": { credits: 100, remaining: 0 },
    });
  });
});
