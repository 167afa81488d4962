import { describe, expect, it } from "vitest";
import { recordGrant } from "../../src/ledger/grants.js";
import { type PricedUsage, recordUsageBatch } from "../../src/ledger/record-usage.js";
import { decimal } from "../../src/pricing/decimal.js";
import { useTestDatabase } from "../support/harness.js";
import { usageEvent } from "../support/usage-events.js";

const db = useTestDatabase();

function usage(key: string, account: string, credits: number): PricedUsage {
  return {
    event: usageEvent({ idempotencyKey: key, billingAccountId: account, model: "m", promptTokens: credits }) as PricedUsage["event"],
    charge: {
      pricingSource: "price_book",
      priceEntry: "m",
      priceEntryOrigin: "price_book",
      contextTier: null,
      lines: [],
      providerCostUsd: decimal(`${credits}e-7`),
      chargedCredits: BigInt(credits),
    },
  };
}

const record = (charges: PricedUsage[], lowBalanceThresholds: bigint[] = []) =>
  recordUsageBatch(db.pool, { charges, quarantines: [], priceBookHash: "test", lowBalanceThresholds });

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
    const batches = Array.from({ length: 4 }, (_, worker) =>
      shuffled(accounts, worker + 1).map((account) => usage(`w${worker}-${account}`, account, 3 + worker)),
    );
    const results = await Promise.all(batches.map((batch) => record(batch)));
    expect(results.map((result) => result.charged)).toEqual([500, 500, 500, 500]);
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
    const changed = usage("repeat-1", "acct-repeat", 9);
    const result = await record([first, first, changed]);
    expect(result).toMatchObject({ charged: 1, duplicates: 1, conflicts: 1 });
    expect(result.alerts.filter((alert) => alert.event === "receipt_conflict")).toEqual([
      expect.objectContaining({ fields: { idempotency_key: "repeat-1" } }),
    ]);
    expect(await balance("acct-repeat")).toBe(-5n);
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
