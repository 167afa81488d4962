import { describe, expect, it } from "vitest";
import { expireCredits } from "../../src/books/expire-credits.js";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { recordTransfer } from "../../src/books/transfers.js";
import { recordUsageBatch } from "../../src/books/record-usage.js";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";
import { useServiceHarness } from "../support/harness.js";
import { pricedUsage } from "../support/usage-events.js";

// No worker: nothing expires here but what a test expires by hand.
const h = useServiceHarness({}, { worker: false });
const DAY_MS = 86_400_000;
const inDays = (days: number) => new Date(Date.now() + days * DAY_MS).toISOString();

async function grant(account: string, reference: string, credits: number, terms: { expires_at?: string; priority?: number } = {}) {
  const answer = await h.admin("POST", `/v1/accounts/${account}/grants`, { credits, reference, ...terms });
  expect(answer.statusCode, answer.body).toBe(201);
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

const transfer = (from: string, body: Record<string, unknown>) => h.admin("POST", `/v1/accounts/${from}/transfers`, body);

/** An account's buckets in consumption order: source, credits, remaining, expiry (ms) and priority. */
async function bucketsOf(account: string) {
  const { rows } = await h.deps.database.pool.query(
    `SELECT source, credits::int AS credits, remaining_credits::int AS remaining, expires_at, priority FROM credit_buckets
     WHERE billing_account_id = $1 ORDER BY priority, expires_at, created_at, id`,
    [account],
  );
  return rows.map((row) => ({ ...row, expires_at: row.expires_at?.toISOString() ?? null }));
}

async function balanceOf(account: string): Promise<number> {
  return (await h.admin("GET", `/v1/accounts/${account}/credits/summary`)).json().balance_credits;
}

async function expectBooksTieOut() {
  expect((await reconcileLedger(h.deps.database.pool)).drifts).toEqual([]);
}

describe("transfers", () => {
  it("preserve keeps the expiries and priorities of the source buckets drawn", async () => {
    const soon = inDays(5);
    const later = inDays(30);
    await grant("xfer-org", "xfer-org-soon", 100, { expires_at: soon });
    await grant("xfer-org", "xfer-org-later", 100, { expires_at: later, priority: 20 });
    await grant("xfer-org", "xfer-org-evergreen", 100);
    const answer = await transfer("xfer-org", { to: "xfer-team", credits: 250, reference: "xfer-preserve", expiration: "preserve" });
    expect(answer.statusCode, answer.body).toBe(201);
    expect(answer.json()).toMatchObject({ from_balance_credits: 50, to_balance_credits: 250, transfer: { from: "xfer-org", to: "xfer-team", expiration: "preserve" } });
    expect(await bucketsOf("xfer-team")).toEqual([
      { source: "transfer_in", credits: 100, remaining: 100, expires_at: later, priority: 20 },
      { source: "transfer_in", credits: 100, remaining: 100, expires_at: soon, priority: 50 },
      { source: "transfer_in", credits: 50, remaining: 50, expires_at: null, priority: 50 },
    ]);
    const { rows } = await h.deps.database.pool.query("SELECT kind, amount_credits::int AS amount FROM ledger_entries WHERE reference = 'xfer-preserve' ORDER BY kind");
    expect(rows).toEqual([{ kind: "transfer_in", amount: 250 }, { kind: "transfer_out", amount: -250 }]);
    await expectBooksTieOut();
  });

  it("none arrives evergreen, fixed at expires_at; the destination's debt is paid first", async () => {
    await grant("xfer-none-from", "xfer-none-grant", 500, { expires_at: inDays(3) });
    await charge("xfer-indebted", ["xfer-indebted-call", 120]);
    expect((await transfer("xfer-none-from", { to: "xfer-indebted", credits: 200, reference: "xfer-none", expiration: "none" })).statusCode).toBe(201);
    expect(await bucketsOf("xfer-indebted")).toEqual([{ source: "transfer_in", credits: 80, remaining: 80, expires_at: null, priority: 50 }]);
    const at = inDays(9);
    expect((await transfer("xfer-none-from", { to: "xfer-fixed", credits: 100, reference: "xfer-fixed", expiration: "fixed", expires_at: at })).statusCode).toBe(201);
    expect(await bucketsOf("xfer-fixed")).toEqual([{ source: "transfer_in", credits: 100, remaining: 100, expires_at: new Date(at).toISOString(), priority: 50 }]);
    await expectBooksTieOut();
  });

  it("a bucket that came by transfer or reversal shows that reference: in the summary, its expiry entry and credits_expired", async () => {
    await grant("xfer-named-org", "xfer-named-grant", 500, { expires_at: inDays(2) });
    expect((await transfer("xfer-named-org", { to: "xfer-named-team", credits: 300, reference: "fund-named-team", expiration: "preserve" })).statusCode).toBe(201);
    const team = async () => (await h.admin("GET", "/v1/accounts/xfer-named-team/credits/summary")).json();
    expect((await team()).grants).toEqual([expect.objectContaining({ reference: "fund-named-team", source: "transfer_in", remaining_credits: 300 })]);
    await charge("xfer-named-team", ["xfer-named-call", 100]);
    await expireCredits(h.deps.database.pool, { now: new Date(Date.now() + 3 * DAY_MS), limit: 100, expiringWithinMs: DAY_MS, lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
    const { rows } = await h.deps.database.pool.query("SELECT reference, amount_credits::int AS amount FROM ledger_entries WHERE billing_account_id = 'xfer-named-team' AND kind = 'expiry'");
    expect(rows).toEqual([{ reference: "fund-named-team", amount: -200 }]);
    const { rows: alerts } = await h.deps.database.pool.query(
      `SELECT a.alert->'fields'->>'reference' AS reference FROM alert_outbox CROSS JOIN LATERAL jsonb_array_elements(alerts) a(alert)
        WHERE a.alert->>'event' = 'credits_expired' AND a.alert->'fields'->>'billing_account_id' = 'xfer-named-team'`,
    );
    expect(alerts).toEqual([{ reference: "fund-named-team" }]);
    // Its bucket gone, the refund arrives as a bucket of its own.
    expect((await reverse("xfer-named-call", { reference: "refund-named-call", reason: "outage" })).statusCode).toBe(201);
    expect((await team()).grants).toEqual([expect.objectContaining({ reference: "refund-named-call", source: "reversal", remaining_credits: 100 })]);
    await expectBooksTieOut();
  });

  it("more than the available credits answers 422 insufficient_credits and moves nothing", async () => {
    await grant("xfer-short", "xfer-short-grant", 100);
    const answer = await transfer("xfer-short", { to: "xfer-short-to", credits: 101, reference: "xfer-short", expiration: "none" });
    expect(answer.statusCode).toBe(422);
    expect(answer.json().error).toMatchObject({ code: "insufficient_credits", available_credits: 100 });
    expect(await balanceOf("xfer-short")).toBe(100);
    expect((await h.admin("GET", "/v1/accounts/xfer-short-to/credits/summary")).statusCode).toBe(404);
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM transfers WHERE reference = 'xfer-short'");
    expect(rows[0].n).toBe(0);
  });

  it("with allow_overdraft the source goes negative, the deficit arrives evergreen, balance_depleted fires once", async () => {
    await grant("xfer-over", "xfer-over-grant", 100, { expires_at: inDays(4) });
    const body = { to: "xfer-over-to", credits: 300, reference: "xfer-over", expiration: "preserve", allow_overdraft: true };
    expect((await transfer("xfer-over", body)).json()).toMatchObject({ from_balance_credits: -200, to_balance_credits: 300 });
    expect((await transfer("xfer-over", body)).statusCode).toBe(200);
    expect(await bucketsOf("xfer-over-to")).toEqual([
      { source: "transfer_in", credits: 100, remaining: 100, expires_at: expect.any(String), priority: 50 },
      { source: "transfer_in", credits: 200, remaining: 200, expires_at: null, priority: 50 },
    ]);
    expect(h.alerts("balance_depleted").filter((line) => line.billing_account_id === "xfer-over")).toEqual([
      expect.objectContaining({ entry_kind: "transfer_out", reference: "xfer-over", balance_before: 100, balance_after: -200 }),
    ]);
    expect(h.alerts("balance_depleted").filter((line) => line.billing_account_id === "xfer-over-to")).toEqual([]);
    const period = new Date().toISOString().slice(0, 7);
    expect((await h.admin("GET", `/v1/accounts/xfer-over/invoice?period=${period}`)).json()).toMatchObject({ transfers_out: 300, closing_balance: -200 });
    expect((await h.admin("GET", `/v1/accounts/xfer-over-to/invoice?period=${period}`)).json()).toMatchObject({ transfers_in: 300, closing_balance: 300 });
    await expectBooksTieOut();
  });

  it("the same again answers 200, another body with the reference 409", async () => {
    await grant("xfer-idem", "xfer-idem-grant", 1000);
    const body = { to: "xfer-idem-to", credits: 100, reference: "xfer-idem", expiration: "none" };
    expect((await transfer("xfer-idem", body)).statusCode).toBe(201);
    const again = await transfer("xfer-idem", body);
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ from_balance_credits: 900, to_balance_credits: 100 });
    for (const other of [{ ...body, credits: 101 }, { ...body, to: "xfer-idem-elsewhere" }, { ...body, expiration: "preserve" }, { ...body, allow_overdraft: true }]) {
      const answer = await transfer("xfer-idem", other);
      expect(answer.statusCode).toBe(409);
      expect(answer.json().error.code).toBe("transfer_reference_conflict");
    }
    expect(await balanceOf("xfer-idem")).toBe(900);
  });

  it("400 names the field: to the same account, fixed without expires_at, expires_at in the past or without fixed", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ to: "xfer-bad", expiration: "none" }, "to:"],
      [{ to: "xfer-bad-to", expiration: "fixed" }, "expires_at:"],
      [{ to: "xfer-bad-to", expiration: "fixed", expires_at: "2020-01-01T00:00:00Z" }, "expires_at:"],
      [{ to: "xfer-bad-to", expiration: "none", expires_at: inDays(3) }, "expires_at:"],
      [{ to: "xfer-bad-to", expiration: "sometimes" }, "expiration:"],
    ];
    for (const [fields, named] of cases) {
      const answer = await transfer("xfer-bad", { credits: 10, reference: "xfer-bad", allow_overdraft: true, ...fields });
      expect(answer.statusCode, answer.body).toBe(400);
      expect(answer.json().error.message.startsWith(named), answer.body).toBe(true);
    }
  });

  it("reconcile names a transfer edited by hand, on both sides of it", async () => {
    await grant("xfer-edit", "xfer-edit-grant", 100);
    expect((await transfer("xfer-edit", { to: "xfer-edit-to", credits: 40, reference: "xfer-edit", expiration: "none" })).statusCode).toBe(201);
    const { pool } = h.deps.database;
    await pool.query("UPDATE transfers SET credits = 41 WHERE reference = 'xfer-edit'");
    try {
      const kinds = (await reconcileLedger(pool)).drifts.map((drift) => `${drift.kind} ${"billingAccountId" in drift ? drift.billingAccountId : ""}`);
      expect(kinds.sort()).toEqual(["hash_mismatch xfer-edit", "hash_mismatch xfer-edit-to", "transfer_entry_mismatch xfer-edit", "transfer_entry_mismatch xfer-edit-to"]);
    } finally {
      await pool.query("UPDATE transfers SET credits = 40 WHERE reference = 'xfer-edit'");
    }
  });

  it("a balance that would pass ±(2^53 − 1) on either side answers 422 balance_out_of_range and moves nothing", async () => {
    await grant("xfer-full", "xfer-full-grant", Number.MAX_SAFE_INTEGER);
    await grant("xfer-full-from", "xfer-full-from-grant", 10);
    const into = await transfer("xfer-full-from", { to: "xfer-full", credits: 10, reference: "xfer-into-full", expiration: "preserve" });
    expect(into.statusCode).toBe(422);
    expect(into.json().error).toMatchObject({ code: "balance_out_of_range", balance_credits: Number.MAX_SAFE_INTEGER });
    expect(into.json().error.message).toMatch(/^credits: the balance of xfer-full would pass/);
    const deep = await h.admin("POST", "/v1/accounts/xfer-deep/debits", { credits: Number.MAX_SAFE_INTEGER, reference: "xfer-deep-debit", reason: "settlement" });
    expect(deep.statusCode).toBe(201);
    const out = await transfer("xfer-deep", { to: "xfer-full-from", credits: 1, reference: "xfer-out-of-deep", expiration: "none", allow_overdraft: true });
    expect(out.statusCode).toBe(422);
    expect(out.json().error).toMatchObject({ code: "balance_out_of_range", balance_credits: -Number.MAX_SAFE_INTEGER });
    expect([await balanceOf("xfer-full"), await balanceOf("xfer-full-from"), await balanceOf("xfer-deep")]).toEqual([Number.MAX_SAFE_INTEGER, 10, -Number.MAX_SAFE_INTEGER]);
    expect(await bucketsOf("xfer-full-from")).toEqual([{ source: "grant", credits: 10, remaining: 10, expires_at: null, priority: 50 }]);
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM transfers WHERE reference IN ('xfer-into-full', 'xfer-out-of-deep')");
    expect(rows[0].n).toBe(0);
    // Refused, not spent: the reference is still free.
    expect((await transfer("xfer-full-from", { to: "xfer-full-to", credits: 10, reference: "xfer-into-full", expiration: "none" })).statusCode).toBe(201);
    await expectBooksTieOut();
  });

  it("200 opposite transfers racing between two accounts: no deadlock, credits conserved, books tie out", async () => {
    await grant("xfer-race-a", "xfer-race-a-grant", 10_000, { expires_at: inDays(8) });
    await grant("xfer-race-b", "xfer-race-b-grant", 10_000);
    const policy = { lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF };
    const transferNumber = (i: number) => {
      const [from, to] = i % 2 === 0 ? ["xfer-race-a", "xfer-race-b"] : ["xfer-race-b", "xfer-race-a"];
      return recordTransfer(
        h.deps.database.pool,
        { fromAccountId: from, toAccountId: to, credits: BigInt(1 + (i % 7)), reference: `xfer-race-${i}`, expiration: "preserve", expiresAt: null, allowOverdraft: i % 3 === 0 },
        policy,
      );
    };
    // As many racing at once as the pool has connections: more would only queue for one, and on
    // a loaded machine 200 queued transactions outwait the pool's bounded wait for a connection.
    const racers = h.deps.database.pool.options.max;
    const outcomes: Array<Awaited<ReturnType<typeof recordTransfer>>> = [];
    await Promise.all(
      Array.from({ length: racers }, async (_, racer) => {
        for (let i = racer; i < 200; i += racers) outcomes[i] = await transferNumber(i);
      }),
    );
    expect(outcomes).toHaveLength(200);
    expect(outcomes.every((result) => result.outcome === "created")).toBe(true);
    expect((await balanceOf("xfer-race-a")) + (await balanceOf("xfer-race-b"))).toBe(20_000);
    await expectBooksTieOut();
  });
});

const reverse = (key: string, body: Record<string, unknown>) => h.admin("POST", `/v1/receipts/${key}/reversals`, body);
const receipt = async (key: string) => (await h.admin("GET", `/v1/receipts/${key}`)).json();

describe("reversals", () => {
  it("partial, then the rest; the same again is 200 and gives nothing twice; over the charge is 422", async () => {
    await grant("rev-partial", "rev-partial-grant", 1000);
    await charge("rev-partial", ["rev-partial-call", 300]);
    const first = await reverse("rev-partial-call", { reference: "rev-partial-1", reason: "provider outage", credits: 100 });
    expect(first.statusCode, first.body).toBe(201);
    expect(first.json()).toMatchObject({ reversal: { credits: 100, idempotency_key: "rev-partial-call" }, reversed_credits: 100, balance_credits: 800 });
    const again = await reverse("rev-partial-call", { reference: "rev-partial-1", reason: "provider outage", credits: 100 });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({ reversed_credits: 100, balance_credits: 800 });
    for (const other of [{ credits: 101, reason: "provider outage" }, { credits: 100, reason: "gesture" }]) {
      const answer = await reverse("rev-partial-call", { reference: "rev-partial-1", ...other });
      expect(answer.statusCode).toBe(409);
      expect(answer.json().error.code).toBe("reversal_reference_conflict");
    }
    // The default is the whole charge, not what is left of it.
    const whole = await reverse("rev-partial-call", { reference: "rev-partial-whole", reason: "gesture" });
    expect(whole.statusCode).toBe(422);
    expect(whole.json().error).toMatchObject({ code: "reversal_exceeds_charge", charged_credits: 300, reversed_credits: 100 });
    expect((await reverse("rev-partial-call", { reference: "rev-partial-2", reason: "gesture", credits: 200 })).json()).toMatchObject({
      reversed_credits: 300,
      balance_credits: 1000,
    });
    expect((await reverse("rev-partial-call", { reference: "rev-partial-3", reason: "gesture", credits: 1 })).statusCode).toBe(422);
    expect(await receipt("rev-partial-call")).toMatchObject({ charged_credits: 300, reversed_credits: 300 });
    // Back into the grant's own bucket, by negative allocations.
    expect(await bucketsOf("rev-partial")).toEqual([{ source: "grant", credits: 1000, remaining: 1000, expires_at: null, priority: 50 }]);
    const { rows } = await h.deps.database.pool.query(
      `SELECT l.reference, a.credits::int AS credits FROM bucket_allocations a JOIN ledger_entries l ON l.id = a.ledger_entry_id
       WHERE l.billing_account_id = 'rev-partial' ORDER BY l.seq`,
    );
    expect(rows).toEqual([
      { reference: "rev-partial-call", credits: 300 },
      { reference: "rev-partial-1", credits: -100 },
      { reference: "rev-partial-2", credits: -200 },
    ]);
    await expectBooksTieOut();
  });

  it("a reversal without a reason that says something is 400 naming reason, and gives nothing back", async () => {
    await charge("rev-blank", ["rev-blank-call", 250]);
    for (const reason of ["", " \u00a0 "]) {
      const answer = await reverse("rev-blank-call", { reference: "rev-blank", reason });
      expect(answer.statusCode, answer.body).toBe(400);
      expect(answer.json().error.message, answer.body).toMatch(/^reason: is empty/);
    }
    expect(await balanceOf("rev-blank")).toBe(-250);
  });

  it("one reference sent twice at once gives back once; reconcile names a reversal edited by hand", async () => {
    await grant("rev-twice", "rev-twice-grant", 400);
    await charge("rev-twice", ["rev-twice-call", 250]);
    const body = { reference: "rev-twice", reason: "outage" };
    const answers = await Promise.all([reverse("rev-twice-call", body), reverse("rev-twice-call", body)]);
    expect(answers.map((answer) => answer.statusCode).sort()).toEqual([200, 201]);
    expect(await balanceOf("rev-twice")).toBe(400);
    const { pool } = h.deps.database;
    await pool.query("UPDATE reversals SET reason = 'edited' WHERE reference = 'rev-twice'");
    try {
      expect((await reconcileLedger(pool)).drifts).toEqual([expect.objectContaining({ kind: "hash_mismatch", billingAccountId: "rev-twice" })]);
    } finally {
      await pool.query("UPDATE reversals SET reason = 'outage' WHERE reference = 'rev-twice'");
    }
  });

  it("the whole charge by default; an unknown receipt is 404", async () => {
    await grant("rev-whole", "rev-whole-grant", 500, { expires_at: inDays(10), priority: 10 });
    await charge("rev-whole", ["rev-whole-call", 200]);
    expect((await reverse("rev-whole-call", { reference: "rev-whole", reason: "support" })).json()).toMatchObject({ reversed_credits: 200, balance_credits: 500 });
    expect(await receipt("rev-whole-call")).toMatchObject({ reversed_credits: 200 });
    expect(await bucketsOf("rev-whole")).toEqual([{ source: "grant", credits: 500, remaining: 500, expires_at: expect.any(String), priority: 10 }]);
    const unknown = await reverse("rev-no-such-call", { reference: "rev-unknown", reason: "support" });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe("receipt_not_found");
  });

  it("a reversal that would take the balance past 2^53 − 1 answers 422 balance_out_of_range and gives nothing back", async () => {
    await charge("rev-full", ["rev-full-call", 300]);
    await grant("rev-full", "rev-full-grant", Number.MAX_SAFE_INTEGER - 1);
    await grant("rev-full", "rev-full-top", 301);
    const refused = await reverse("rev-full-call", { reference: "rev-full", reason: "outage", credits: 1 });
    expect(refused.statusCode).toBe(422);
    expect(refused.json().error).toMatchObject({ code: "balance_out_of_range", balance_credits: Number.MAX_SAFE_INTEGER });
    expect(await receipt("rev-full-call")).toMatchObject({ reversed_credits: 0 });
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM reversals WHERE reference = 'rev-full'");
    expect(rows[0].n).toBe(0);
    await expectBooksTieOut();
  });

  it("a part whose bucket has expired since comes back as an evergreen bucket", async () => {
    await grant("rev-expired", "rev-expired-grant", 200, { expires_at: inDays(1) });
    await charge("rev-expired", ["rev-expired-call", 150]);
    await expireCredits(h.deps.database.pool, { now: new Date(Date.now() + 2 * DAY_MS), limit: 100, expiringWithinMs: DAY_MS, lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
    expect(await balanceOf("rev-expired")).toBe(0);
    expect((await reverse("rev-expired-call", { reference: "rev-expired", reason: "outage" })).json()).toMatchObject({ balance_credits: 150 });
    expect(await bucketsOf("rev-expired")).toEqual([
      { source: "grant", credits: 200, remaining: 0, expires_at: expect.any(String), priority: 50 },
      { source: "reversal", credits: 150, remaining: 150, expires_at: null, priority: 50 },
    ]);
    await expectBooksTieOut();
  });

  it("pays the account's debt first: the part of the charge that was debt, and any other debt", async () => {
    await grant("rev-debt", "rev-debt-grant", 100);
    await charge("rev-debt", ["rev-debt-funded", 100], ["rev-debt-unfunded", 300]);
    expect((await reverse("rev-debt-funded", { reference: "rev-debt-1", reason: "outage" })).json()).toMatchObject({ balance_credits: -200 });
    expect(await bucketsOf("rev-debt")).toEqual([{ source: "grant", credits: 100, remaining: 0, expires_at: null, priority: 50 }]);
    expect((await reverse("rev-debt-unfunded", { reference: "rev-debt-2", reason: "outage" })).json()).toMatchObject({ balance_credits: 100 });
    // The 100 left over goes back where the unfunded call drew it from: nowhere, so evergreen.
    expect(await bucketsOf("rev-debt")).toEqual([
      { source: "grant", credits: 100, remaining: 0, expires_at: null, priority: 50 },
      { source: "reversal", credits: 100, remaining: 100, expires_at: null, priority: 50 },
    ]);
    const invoice = (await h.admin("GET", `/v1/accounts/rev-debt/invoice?period=${new Date().toISOString().slice(0, 7)}`)).json();
    expect(invoice).toMatchObject({ credits_reversed: 400, closing_balance: 100 });
    await expectBooksTieOut();
  });
});
