import { Writable } from "node:stream";
import { pino } from "pino";
import { beforeEach, describe, expect, it } from "vitest";
import { deliverCommittedAlerts, deliverStrandedAlerts } from "../../src/books/alert-outbox.js";
import { recordGrant } from "../../src/books/grants.js";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { type PricedUsage, recordUsageBatch } from "../../src/books/record-usage.js";
import { useTestDatabase } from "../support/harness.js";
import { pricedUsage as usage } from "../support/usage-events.js";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";

const db = useTestDatabase();

const record = (charges: PricedUsage[], lowBalanceThresholds: bigint[] = []) =>
  recordUsageBatch(db.pool, { charges, quarantines: [], priceBookHash: "test", lowBalanceThresholds, enforcement: ENFORCEMENT_OFF });

async function balance(account: string): Promise<bigint> {
  const { rows } = await db.pool.query("SELECT balance_credits FROM accounts WHERE id = $1", [account]);
  return BigInt(rows[0].balance_credits);
}

function shuffled<T>(items: T[], seed: number): T[] {
  const copy = [...items];
  let state = seed;
  for (let i = copy.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const j = state % (i + 1);
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

describe("recordUsageBatch under concurrency", () => {
  it("serialises batches over 500 accounts in random orders from 4 workers without deadlock", async () => {
    const accounts = Array.from({ length: 500 }, (_, n) => `acct-${n}`);
    // Existing accounts, so the row locks (not the creation of new rows) decide the order.
    await db.pool.query("INSERT INTO accounts (id) SELECT unnest($1::text[])", [accounts]);
    const batches = Array.from({ length: 4 }, (_, worker) =>
      shuffled(accounts, worker + 1).map((account) => usage(`w${worker}-${account}`, account, 3 + worker)),
    );
    const results = await Promise.all(batches.map((batch) => record(batch)));
    expect(results.map((result) => result.charged.length)).toEqual([500, 500, 500, 500]);
    // Every account was charged 3 + 4 + 5 + 6 credits, one entry per worker.
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM accounts WHERE id LIKE 'acct-%' AND balance_credits <> -18",
    );
    expect(rows[0].n).toBe(0);
  });

  it("lands both a charge and a grant racing on one account, and keys stay unique across racers", async () => {
    const racers = Array.from({ length: 20 }, (_, n) =>
      n % 2 === 0
        ? record([usage(`race-${n}`, "acct-race", 10), usage("race-shared", "acct-race", 7)])
        : recordGrant(db.pool, { billingAccountId: "acct-race", credits: 25n, reference: `race-grant-${n}`, reason: null }),
    );
    await Promise.all(racers);
    // 10 charges of 10, one shared charge of 7, 10 grants of 25.
    expect(await balance("acct-race")).toBe(-100n - 7n + 250n);
  });

  it("records a key once when it repeats inside one batch, and flags different usage as a conflict", async () => {
    const first = usage("repeat-1", "acct-repeat", 5);
    const changed = usage("repeat-1", "acct-repeat-other", 9);
    const result = await record([first, first, changed]);
    expect(result).toMatchObject({ duplicates: 1, conflicts: 1 });
    expect(result.charged.map((charged) => charged.event.idempotencyKey)).toEqual(["repeat-1"]);
    expect(result.alerts.filter((alert) => alert.event === "receipt_conflict")).toEqual([
      expect.objectContaining({ fields: { idempotency_key: "repeat-1" } }),
    ]);
    expect(await balance("acct-repeat")).toBe(-5n);
    // The conflicting delivery is kept for inspection, names no account into existence,
    // and the same conflicting delivery again (a retried job) alerts nothing new.
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM quarantine WHERE reason = 'receipt_conflict'");
    expect(rows[0].n).toBe(1);
    expect((await db.pool.query("SELECT id FROM accounts WHERE id = 'acct-repeat-other'")).rows).toEqual([]);
    expect((await record([changed])).alerts).toEqual([]);
  });

  it("decides each alert once: the same batch recorded again (a retried job) alerts nothing", async () => {
    const batch = [usage("retry-1", "acct-retry", 40), usage("retry-2", "acct-retry", 40)];
    const first = await record(batch, [100n]);
    expect(first.alerts.map((alert) => alert.event).sort()).toEqual([
      "inv_post_call_negative_balance",
      "inv_post_call_negative_balance",
    ]);
    const again = await record(batch, [100n]);
    expect(again).toMatchObject({ charged: [], duplicates: 2, conflicts: 0, alerts: [] });
  });
});

describe("reconcile", () => {
  it("sees receipts and entries that name an account that does not exist", async () => {
    await db.pool.query(
      `INSERT INTO charge_receipts (idempotency_key, billing_account_id, pricing_source, provider_cost_usd, charged_credits,
         prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, usage_fingerprint, price_book_id)
       VALUES ('orphan-1', 'acct-nobody', 'price_book', 0, 5, 1, 1, 0, 0, 0, 'x', 0)`,
    );
    const report = await reconcileLedger(db.pool);
    expect(report.ok).toBe(false);
    expect(report.drifts).toContainEqual({ kind: "receipt_without_account", idempotencyKey: "orphan-1", billingAccountId: "acct-nobody" });
    await db.pool.query("DELETE FROM charge_receipts WHERE idempotency_key = 'orphan-1'");
  });
});

describe("balance alerts", () => {
  it("fires balance_depleted once from +100 to -50, not again on to -80", async () => {
    await recordGrant(db.pool, { billingAccountId: "acct-deplete", credits: 100n, reference: "deplete-100", reason: null });
    const first = await record([usage("deplete-1", "acct-deplete", 150)]);
    expect(first.alerts.map((alert) => alert.event).sort()).toEqual(["balance_depleted", "inv_post_call_negative_balance"]);
    expect(first.alerts[0]!.fields).toMatchObject({ balance_before: 100, balance_after: -50, crossed_zero: true });
    const second = await record([usage("deplete-2", "acct-deplete", 30)]);
    expect(second.alerts.map((alert) => alert.event)).toEqual(["inv_post_call_negative_balance"]);
    expect(second.alerts[0]!.fields).toMatchObject({ balance_before: -50, balance_after: -80, crossed_zero: false });
  });

  it("fires low_balance once per crossing and again after a grant lifts the balance back", async () => {
    const thresholds = [500n, 100n];
    await recordGrant(db.pool, { billingAccountId: "acct-low", credits: 1000n, reference: "low-1000", reason: null });
    const events = async (key: string, credits: number) =>
      (await record([usage(key, "acct-low", credits)], thresholds)).alerts
        .filter((alert) => alert.event === "low_balance")
        .map((alert) => alert.fields.threshold);
    expect(await events("low-1", 600)).toEqual([500]); // 1000 → 400
    expect(await events("low-2", 100)).toEqual([]); // 400 → 300
    expect(await events("low-3", 250)).toEqual([100]); // 300 → 50
    await recordGrant(db.pool, { billingAccountId: "acct-low", credits: 1000n, reference: "low-refill", reason: null });
    expect(await events("low-4", 600)).toEqual([500]); // 1050 → 450
  });
});

describe("alert delivery", () => {
  // Earlier tests record without delivering; start from an outbox with nothing pending.
  beforeEach(() => db.pool.query("UPDATE alert_outbox SET delivered_at = now() WHERE delivered_at IS NULL"));

  function capture() {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino(new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
    return { lines, logger };
  }

  it("logs committed alerts once, and the sweeper leaves delivered ones alone", async () => {
    const { lines, logger } = capture();
    const result = await record([usage("deliver-1", "acct-deliver", 10)]);
    await deliverCommittedAlerts(db.pool, logger, result.alerts);
    await deliverCommittedAlerts(db.pool, logger, result.alerts);
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 10 })).toBe(0);
    expect(lines.map((line) => line.event)).toEqual(["inv_post_call_negative_balance"]);
    expect(lines[0]).toMatchObject({ idempotency_key: "deliver-1", balance_after: -10, level: 50 });
  });

  it("delivers alerts a crashed process left in the outbox, once", async () => {
    const { lines, logger } = capture();
    await record([usage("stranded-1", "acct-stranded", 10)]);
    // Nobody delivered it: as if the worker died between commit and log.
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 60_000, limit: 10 })).toBe(0);
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 10 })).toBe(1);
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 10 })).toBe(0);
    expect(lines).toEqual([expect.objectContaining({ event: "inv_post_call_negative_balance", idempotency_key: "stranded-1" })]);
  });
});
