import { describe, expect, it } from "vitest";
import { MAX_CREDITS } from "../../src/platform/db/credit-bounds.js";
import { recordUsageBatch } from "../../src/books/record-usage.js";
import { useServiceHarness } from "../support/harness.js";
import { pricedUsage } from "../support/usage-events.js";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";

// No worker: these tests post charges straight into the books, as the worker would.
const h = useServiceHarness({}, { worker: false });
const MAX = Number.MAX_SAFE_INTEGER;

const charge = (key: string, account: string, credits: bigint) =>
  recordUsageBatch(h.deps.database.pool, {
    charges: [pricedUsage(key, account, credits)],
    quarantines: [],
    priceBookHash: "test",
    lowBalanceThresholds: [],
    enforcement: ENFORCEMENT_OFF,
  });

async function everyReadAnswers(account: string, receiptKey: string): Promise<void> {
  const month = new Date().toISOString().slice(0, 7);
  for (const url of [
    `/v1/accounts/${account}/credits/summary`,
    `/v1/accounts/${account}/ledger?limit=500`,
    `/v1/accounts/${account}/invoice?period=${month}`,
    `/v1/receipts/${receiptKey}`,
  ]) {
    const answer = await h.admin("GET", url);
    expect({ url, status: answer.statusCode }).toEqual({ url, status: 200 });
  }
}

describe("bounded numbers: balances, grants and charges within ±(2^53 − 1)", () => {
  it("grants up to the bound; one credit more is 422 before anything commits, however often it is retried", async () => {
    const granted = await h.admin("POST", "/v1/accounts/acct-top/grants", { credits: MAX, reference: "top-max" });
    expect(granted.statusCode).toBe(201);
    expect(granted.json().balance_credits).toBe(MAX);
    for (const attempt of [1, 2]) {
      const refused = await h.admin("POST", "/v1/accounts/acct-top/grants", { credits: 1, reference: "top-one-more" });
      expect({ attempt, status: refused.statusCode, body: refused.json() }).toEqual({
        attempt,
        status: 422,
        body: {
          error: {
            code: "balance_out_of_range",
            message: `credits: the balance would pass ${MAX} credits; nothing was granted`,
            balance_credits: MAX,
          },
        },
      });
    }
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS grants FROM grants WHERE billing_account_id = 'acct-top'");
    expect(rows[0].grants).toBe(1);
    // A charge brings it down, and the grant refused before now fits.
    await charge("top-call", "acct-top", 10n);
    expect((await h.admin("POST", "/v1/accounts/acct-top/grants", { credits: 1, reference: "top-one-more" })).json().balance_credits).toBe(MAX - 9);
    await everyReadAnswers("acct-top", "top-call");
  });

  it("901 calls at $1M: the one that would pass −(2^53 − 1) is quarantined, the rest charged, every read answers", async () => {
    const million = 10n ** 13n; // $1M at 10,000,000 credits per USD
    // In the worker's batches of 128: the last (calls 896–900) crosses the bound at its fifth call.
    for (let call = 0; call < 901; call += 128) {
      const batch = Array.from({ length: Math.min(128, 901 - call) }, (_, n) => pricedUsage(`big-${call + n}`, "acct-big", million));
      await recordUsageBatch(h.deps.database.pool, { charges: batch, quarantines: [], priceBookHash: "test", lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
    }
    const summary = (await h.admin("GET", "/v1/accounts/acct-big/credits/summary")).json();
    expect(summary.balance_credits).toBe(-900 * 10 ** 13);
    const { rows } = await h.deps.database.pool.query(
      "SELECT reason, idempotency_key, detail->>'charged_credits' AS credits FROM quarantine WHERE idempotency_key LIKE 'big-%'",
    );
    expect(rows).toEqual([{ reason: "balance_out_of_range", idempotency_key: "big-900", credits: million.toString() }]);
    await everyReadAnswers("acct-big", "big-0");
    expect((await h.admin("GET", "/v1/receipts/big-900")).statusCode).toBe(404);
  });

  it("a single charge beyond the bound is quarantined, never recorded", async () => {
    const result = await charge("huge-call", "acct-huge", MAX_CREDITS + 1n);
    expect(result).toMatchObject({ charged: [], quarantined: 1 });
    const { rows } = await h.deps.database.pool.query("SELECT reason FROM quarantine WHERE idempotency_key = 'huge-call'");
    expect(rows).toEqual([{ reason: "charge_out_of_range" }]);
    expect((await h.admin("GET", "/v1/receipts/huge-call")).statusCode).toBe(404);
  });

  it("a month that granted and used more than 2^53 − 1 in all answers with the exact integers", async () => {
    const account = "acct-churn";
    await h.admin("POST", `/v1/accounts/${account}/grants`, { credits: MAX, reference: "churn-1" });
    await charge("churn-call-1", account, MAX_CREDITS);
    await charge("churn-call-2", account, MAX_CREDITS);
    await h.admin("POST", `/v1/accounts/${account}/grants`, { credits: MAX, reference: "churn-2" });
    const month = new Date().toISOString().slice(0, 7);
    const invoice = await h.admin("GET", `/v1/accounts/${account}/invoice?period=${month}`);
    expect(invoice.statusCode).toBe(200);
    const twice = (2n * MAX_CREDITS).toString();
    expect(invoice.payload).toContain(`"credits_granted":${twice}`);
    expect(invoice.payload).toContain(`"credits_used":${twice}`);
    expect(invoice.payload).toContain(`"opening_balance":0`);
    expect(invoice.payload).toContain(`"closing_balance":0`);
    await everyReadAnswers(account, "churn-call-2");
  });
});

/** Inserts a grant and its entry for acct-late posted at now() shifted by `shift`, and commits. */
async function commitGrantEntryDated(reference: string, shift: string): Promise<void> {
  const client = await h.deps.database.pool.connect();
  try {
    await client.query("BEGIN");
    await client.query(
      `WITH grant_row AS (INSERT INTO grants (billing_account_id, reference, credits) VALUES ('acct-late', $1, 1) RETURNING id)
       INSERT INTO ledger_entries (billing_account_id, kind, amount_credits, balance_before, balance_after, reference, grant_id, seq, hash, created_at)
       SELECT 'acct-late', 'grant', 1, 100, 101, $1, id, 2, 'x', now() ${shift} FROM grant_row`,
      [reference],
    );
    await client.query("COMMIT");
  } finally {
    client.release();
  }
}

describe("stable periods", () => {
  it("a charge that waited on the account's lock is posted when it got the lock, after a cut taken meanwhile", async () => {
    const { pool } = h.deps.database;
    await h.admin("POST", "/v1/accounts/acct-wait/grants", { credits: 1000, reference: "wait-grant" });
    const holder = await pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM accounts WHERE id = 'acct-wait' FOR UPDATE");
      const waiting = charge("wait-call", "acct-wait", 10n);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const { rows } = await pool.query<{ cut: Date }>("SELECT clock_timestamp() AS cut");
      const cut = rows[0]!.cut;
      // What an invoice cut at this moment sees: not the waiting charge.
      const before = await pool.query("SELECT count(*)::int AS n FROM ledger_entries WHERE billing_account_id = 'acct-wait' AND created_at < $1", [cut]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await holder.query("COMMIT");
      await waiting;
      const after = await pool.query("SELECT count(*)::int AS n FROM ledger_entries WHERE billing_account_id = 'acct-wait' AND created_at < $1", [cut]);
      expect(after.rows[0].n).toBe(before.rows[0].n);
    } finally {
      holder.release();
    }
    const { rows: times } = await pool.query<{ created_at: Date }>(
      "SELECT created_at FROM ledger_entries WHERE billing_account_id = 'acct-wait' ORDER BY seq",
    );
    expect(times.map((row) => row.created_at.getTime())).toEqual(times.map((row) => row.created_at.getTime()).sort((a, b) => a - b));
  });

  it("posting times never run backwards per account, under concurrent batches", async () => {
    const { pool } = h.deps.database;
    await Promise.all(
      Array.from({ length: 8 }, (_, worker) =>
        recordUsageBatch(pool, {
          charges: Array.from({ length: 20 }, (_, n) => pricedUsage(`order-${worker}-${n}`, "acct-order", 1n)),
          quarantines: [],
          priceBookHash: "test",
          lowBalanceThresholds: [],
          enforcement: ENFORCEMENT_OFF,
        }),
      ),
    );
    const { rows } = await pool.query<{ backwards: number }>(
      `SELECT count(*)::int AS backwards FROM (
         SELECT created_at < lag(created_at) OVER (ORDER BY seq) AS back FROM ledger_entries WHERE billing_account_id = 'acct-order') s
       WHERE back`,
    );
    expect(rows[0]!.backwards).toBe(0);
  });

  it("an entry dated more than 30 s before its commit, or ahead of the clock, is refused, so a month a minute over is final", async () => {
    await h.admin("POST", "/v1/accounts/acct-late/grants", { credits: 100, reference: "late-grant" });
    // A grant posted into an earlier month, as a transaction stalled for 40 days would; and one
    // dated ahead of the clock (a clock stepped back, or a forged time).
    await expect(commitGrantEntryDated("late", "- interval '40 days'")).rejects.toThrow(/would commit more than 30 s later/);
    await expect(commitGrantEntryDated("ahead", "+ interval '1 hour'")).rejects.toThrow(/is dated ahead of the clock/);
    const now = new Date();
    const thisMonth = now.toISOString().slice(0, 7);
    const lastMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
    const open = (await h.admin("GET", `/v1/accounts/acct-late/invoice?period=${thisMonth}`)).json();
    const monthEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    expect(open).toMatchObject({ final: false, final_at: new Date(monthEnd.getTime() + 60_000).toISOString(), closing_balance: 100 });
    const closed = (await h.admin("GET", `/v1/accounts/acct-late/invoice?period=${lastMonth}`)).json();
    expect(closed).toMatchObject({ final: true, opening_balance: 0, closing_balance: 0 });
  });
});
