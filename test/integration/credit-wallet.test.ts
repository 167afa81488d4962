import { describe, expect, it } from "vitest";
import { reconcileLedger } from "../../src/books/reconcile.js";
import { recordUsageBatch } from "../../src/books/record-usage.js";
import { ENFORCEMENT_OFF } from "../../src/platform/config.js";
import { useServiceHarness } from "../support/harness.js";
import { pricedUsage } from "../support/usage-events.js";

const h = useServiceHarness();
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
});
