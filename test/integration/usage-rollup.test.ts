import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { type PricedUsage, recordUsageBatch } from "../../src/books/record-usage.js";
import { recordReversal } from "../../src/books/reversals.js";
import { rebuildUsage, rollUpUsage } from "../../src/books/usage-rollup.js";
import { MAX_CREDITS } from "../../src/platform/db/credit-bounds.js";
import { decimal } from "../../src/pricing/decimal.js";
import { useTestDatabase } from "../support/harness.js";
import { usageEvent } from "../support/usage-events.js";
import { rollUpAll } from "../support/roll-up-all.js";
import { expectRollupsEqualReceipts, receiptsAndRollups } from "../support/usage-rollups.js";

const db = useTestDatabase();

// Batches are recorded by sessions in a time zone half an hour off UTC: an hour cut in the
// session's zone instead of UTC would land every call in the wrong row.
let offUtc: pg.Pool;
beforeAll(() => {
  offUtc = new pg.Pool({ connectionString: db.url, max: 4, options: "-c TimeZone=America/St_Johns" });
});
afterAll(() => offUtc.end());

const record = (pool: pg.Pool, charges: PricedUsage[]) =>
  recordUsageBatch(pool, { charges, quarantines: [], priceBookHash: "test", lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });

const MODELS = ["gpt-4o-mini", "openai/gpt-4o", "claude-3-5-sonnet", "gemini-1.5-pro", null] as const;
const SOURCES = ["price_book", "price_book", "reported_cost", "free", "cache_hit"] as const;
const KEYS = ["a".repeat(64), "b".repeat(64), undefined] as const;
const START = Date.parse("2026-02-27T22:00:00Z"); // 3 days over a month end
const THREE_DAYS_MS = 3 * 24 * 3600 * 1000;

/** The n-th call of a deterministic spread: 50 accounts, 5 models, 3 days, keys, teams and pricing sources. */
function call(n: number, prefix: string): PricedUsage {
  const source = SOURCES[n % SOURCES.length]!;
  const credits = source === "free" || source === "cache_hit" ? 0n : BigInt(1 + ((n * 7919) % 5000));
  const team = n % 4 === 0 ? undefined : `team-${n % 3}`;
  const key = KEYS[(n >> 2) % KEYS.length];
  return {
    event: usageEvent({
      idempotencyKey: `${prefix}-${n}`,
      billingAccountId: `acct-${n % 50}`,
      model: MODELS[(n >> 3) % MODELS.length]!,
      provider: "openai",
      cacheHit: source === "cache_hit",
      promptTokens: 100 + (n % 900),
      cacheReadTokens: n % 50,
      cacheWriteTokens: n % 30,
      completionTokens: 20 + (n % 400),
      reasoningTokens: n % 10,
      // Every 13th call has no time of its own: it counts in its charge's hour.
      eventTime: n % 13 === 0 ? null : new Date(START + ((n * 104_729) % THREE_DAYS_MS)).toISOString(),
      ...(key === undefined ? {} : { keyHash: key }),
      ...(team === undefined ? {} : { teamId: team }),
    }) as PricedUsage["event"],
    charge: {
      pricingSource: source,
      rateStep: source === "price_book" ? "price_book" : null,
      priceEntry: null,
      contextTier: null,
      serviceTier: null,
      lines: [],
      providerCostUsd: decimal(`${credits}e-7`),
      chargedCredits: credits,
      reportedCostUsd: null,
      reason: null,
      divergence: null,
    },
  };
}

describe("usage_hourly", () => {
  it("equals the aggregate of the receipts after 20,000 charges over 50 accounts, 5 models and 3 days, from concurrent batches", async () => {
    const CALLS = 20_000;
    const BATCH = 500;
    const batches = Array.from({ length: CALLS / BATCH }, (_, b) => Array.from({ length: BATCH }, (_, i) => call(b * BATCH + i, "spread")));
    // Redeliveries (the same calls again) and a call under a used id with other usage (a conflict) change nothing.
    batches.push(batches[3]!.slice(0, 100), [{ ...call(7, "spread"), event: { ...call(7, "spread").event, promptTokens: 1 } }]);
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async (_, worker) => {
        for (let batch = next++; batch < batches.length; batch = next++) await record(worker % 2 === 0 ? db.pool : offUtc, batches[batch]!);
      }),
    );
    await rollUpAll(db.pool);
    const { receipts, rollups } = await receiptsAndRollups(db.pool);
    expect(rollups).toEqual(receipts);
    const { rows } = await db.pool.query(
      `SELECT sum(calls)::int AS calls, count(DISTINCT billing_account_id)::int AS accounts, count(DISTINCT model)::int AS models,
              count(DISTINCT date_trunc('day', hour, 'UTC')) FILTER (WHERE hour < '2026-03-03')::int AS days FROM usage_hourly`,
    );
    // The canonical model drops the provider's prefix: openai/gpt-4o counts as gpt-4o; a call without a model under ''.
    // 72 hours from 22:00 on Feb 27 touch four UTC days.
    expect(rows[0]).toEqual({ calls: CALLS, accounts: 50, models: 5, days: 4 });
    expect((await reconcileLedger(db.pool)).ok).toBe(true);
  });

  it("counts no charge the books refused, and a reversal moves credits, not usage", async () => {
    await record(db.pool, [call(1, "bound")]);
    await rollUpAll(db.pool);
    const before = await receiptsAndRollups(db.pool);
    // An account a charge would take past the bound: the charge keeps no receipt and no usage.
    await db.pool.query("INSERT INTO accounts (id, balance_credits) VALUES ('acct-edge', $1)", [(-MAX_CREDITS + 1n).toString()]);
    const edge = call(2, "bound");
    const refused = await record(db.pool, [{ ...edge, event: { ...edge.event, billingAccountId: "acct-edge" }, charge: { ...edge.charge, chargedCredits: 50n } }]);
    expect(refused.quarantined).toBe(1);
    await db.pool.query("DELETE FROM accounts WHERE id = 'acct-edge'");
    expect(await recordReversal(db.pool, { idempotencyKey: "bound-1", reference: "bound-reversal", reason: "test", credits: null }, ENFORCEMENT_OFF)).toMatchObject({ outcome: "created" });
    await rollUpAll(db.pool);
    expect(await receiptsAndRollups(db.pool)).toEqual(before);
  });

  it("is reported by reconcile when a row is tampered with, missing or unbacked, and rebuilt from the receipts", async () => {
    await record(db.pool, Array.from({ length: 200 }, (_, n) => call(n, "tamper")));
    await rollUpAll(db.pool);
    await db.pool.query(
      `UPDATE usage_hourly SET calls = calls + 1, charged_credits = charged_credits + 5
       WHERE (billing_account_id, hour, model, key_hash, team_id) = (SELECT billing_account_id, hour, model, key_hash, team_id FROM usage_hourly
                                                                      WHERE billing_account_id = 'acct-3' ORDER BY 2, 3, 4, 5 LIMIT 1)`,
    );
    const { rows: dropped } = await db.pool.query(
      `DELETE FROM usage_hourly WHERE (billing_account_id, hour, model, key_hash, team_id) =
         (SELECT billing_account_id, hour, model, key_hash, team_id FROM usage_hourly WHERE billing_account_id = 'acct-4' ORDER BY 2, 3, 4, 5 LIMIT 1)
       RETURNING billing_account_id`,
    );
    expect(dropped).toHaveLength(1);
    await db.pool.query(
      `INSERT INTO usage_hourly SELECT billing_account_id, hour - interval '1 year', model, key_hash, team_id, calls, free_calls, priced_calls,
         reported_calls, input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, charged_credits, priced_credits,
         reported_credits FROM usage_hourly WHERE billing_account_id = 'acct-5' LIMIT 1`,
    );
    await db.pool.query(
      `INSERT INTO usage_hourly VALUES ('acct-nobody', '2026-01-01T00:00:00Z', 'm', '', '', 1, 0, 1, 0, 1, 0, 0, 1, 0, 9, 9, 0)`,
    );
    const report = await reconcileLedger(db.pool);
    const found = report.drifts.filter((drift) => drift.kind === "usage_rollup_mismatch");
    expect(found.map((drift) => [drift.billingAccountId, drift.problem, drift.problem === "differs" ? drift.fields : []])).toEqual([
      ["acct-3", "differs", ["calls", "charged_credits"]],
      ["acct-4", "missing", []],
      ["acct-5", "unbacked", []],
      ["acct-nobody", "unbacked", []],
    ]);
    expect(report.ok).toBe(false);

    const rebuilt = await rebuildUsage(db.pool);
    expect(rebuilt.strayRows).toBe(1);
    await expectRollupsEqualReceipts(db.pool);
    expect((await reconcileLedger(db.pool)).ok).toBe(true);
  });

  it("rebuilds while batches are charged and rolled up by concurrent runs, without losing or double counting one", async () => {
    await db.pool.query("TRUNCATE usage_hourly");
    let charging = true;
    let n = 0;
    const charger = (async () => {
      while (charging || n < 4000) {
        await record(n % 1000 < 500 ? db.pool : offUtc, Array.from({ length: 250 }, () => call(n++, "during-rebuild")));
      }
    })();
    // Runs from several workers at once: each range of transactions is taken in once.
    let runs = 0;
    const rollers = Array.from({ length: 3 }, async () => {
      while (charging) runs += (await rollUpUsage(n % 2 === 0 ? db.pool : offUtc)).ran ? 1 : 0;
    });
    // Rebuild twice, so at least one runs while batches commit.
    await rebuildUsage(db.pool);
    await rebuildUsage(db.pool);
    charging = false;
    await Promise.all([charger, ...rollers]);
    await rollUpAll(db.pool);
    expect(runs).toBeGreaterThan(0);
    await expectRollupsEqualReceipts(db.pool);
  });
});
