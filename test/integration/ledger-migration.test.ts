import { rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { runMigrations } from "../../src/platform/db/migrate.js";
import { recordGrant } from "../../src/books/grants.js";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { recordUsageBatch } from "../../src/books/record-usage.js";
import { migrationsUpTo } from "../support/migrations.js";
import { adminQuery, databaseUrlFor } from "../support/test-env.js";
import { pricedUsage } from "../support/usage-events.js";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";

const LAST_BEFORE_CHAIN = "0005_gateway_lookup_indexes";

const name = `spend_ingest_m_${randomBytes(6).toString("hex")}`;
const folder = migrationsUpTo(LAST_BEFORE_CHAIN);
let pool: pg.Pool | undefined;

afterAll(async () => {
  await pool?.end();
  await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  rmSync(folder, { recursive: true, force: true });
});

describe("the ledger chain migration", () => {
  it("numbers and chains books written before it, and new postings continue them", async () => {
    await adminQuery(`CREATE DATABASE ${name}`);
    await runMigrations(databaseUrlFor(name), folder);
    pool = new pg.Pool({ connectionString: databaseUrlFor(name) });
    // Books as the previous version wrote them: posting times at the transaction's start, with
    // microseconds, not always in id order.
    await pool.query(`
      INSERT INTO accounts (id, balance_credits) VALUES ('old-a', 850), ('old-b', -10), ('old-big', 18014398509481982);
      INSERT INTO grants (id, billing_account_id, reference, credits) VALUES (1, 'old-a', 'old-grant', 1000),
        (2, 'old-big', 'big-1', 9007199254740991), (3, 'old-big', 'big-2', 9007199254740991);
      INSERT INTO charge_receipts (id, idempotency_key, billing_account_id, pricing_source, provider_cost_usd, charged_credits,
        prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, usage_fingerprint, price_book_hash)
      VALUES (1, 'old-call-1', 'old-a', 'price_book', 0.00001, 100, 1, 1, 0, 0, 0, 'f1', 'h'),
             (2, 'old-call-2', 'old-a', 'price_book', 0.000005, 50, 1, 1, 0, 0, 0, 'f2', 'h'),
             (3, 'old-call-3', 'old-b', 'price_book', 0.000001, 10, 1, 1, 0, 0, 0, 'f3', 'h');
      INSERT INTO ledger_entries (billing_account_id, kind, amount_credits, balance_before, balance_after, reference, grant_id, receipt_id, created_at)
      VALUES ('old-a', 'grant', 1000, 0, 1000, 'old-grant', 1, NULL, '2026-10-01T10:00:00.123456Z'),
             ('old-b', 'charge', -10, 0, -10, 'old-call-3', NULL, 3, '2026-10-02T10:00:00.000001Z'),
             ('old-a', 'charge', -100, 1000, 900, 'old-call-1', NULL, 1, '2026-10-03T10:00:00.654321Z'),
             ('old-a', 'charge', -50, 900, 850, 'old-call-2', NULL, 2, '2026-10-03T09:59:59.999999Z'),
             ('old-big', 'grant', 9007199254740991, 0, 9007199254740991, 'big-1', 2, NULL, '2026-10-04T00:00:00Z'),
             ('old-big', 'grant', 9007199254740991, 9007199254740991, 18014398509481982, 'big-2', 3, NULL, '2026-10-05T00:00:00Z');
      SELECT setval('grants_id_seq', 3); SELECT setval('charge_receipts_id_seq', 3);`);

    // The receipts from before are in usage_hourly from the migration on (0015): reconcile finds no usage_rollup_mismatch.
    // Books past the bound the new version keeps (two grants of 2^53 − 1, as the old one allowed)
    // do not stop the migration: reconcile reports them, and they may only move toward zero.
    await runMigrations(databaseUrlFor(name));
    expect(await reconcileLedger(pool)).toMatchObject({
      ok: false,
      accountsChecked: 3,
      drifts: [{ kind: "balance_out_of_bound", billingAccountId: "old-big", balance: "18014398509481982" }],
    });
    // Digests became bytes and the price book an id (0017), and the reconcile above recomputed every
    // hash chained before from them: the content they render is the text they were chained with.
    const { rows: stored } = await pool.query(
      "SELECT encode(r.usage_fingerprint, 'hex') AS fingerprint, b.hash AS book, octet_length(l.hash) AS hash_bytes FROM charge_receipts r JOIN price_books b ON b.id = r.price_book_id JOIN ledger_entries l ON l.receipt_id = r.id WHERE r.id = 1",
    );
    expect(stored).toEqual([{ fingerprint: "f1", book: "h", hash_bytes: 32 }]);
    // Each positive balance became one evergreen opening bucket (old-b, in debt, has none), so live
    // credit ties out from the migration on.
    const { rows: openings } = await pool.query(
      "SELECT billing_account_id, source, priority, expires_at, credits, remaining_credits FROM credit_buckets ORDER BY billing_account_id",
    );
    expect(openings).toEqual([
      { billing_account_id: "old-a", source: "opening", priority: 50, expires_at: null, credits: "850", remaining_credits: "850" },
      { billing_account_id: "old-big", source: "opening", priority: 50, expires_at: null, credits: "18014398509481982", remaining_credits: "18014398509481982" },
    ]);
    const { rows: heads } = await pool.query("SELECT id, ledger_seq FROM accounts ORDER BY id");
    expect(heads).toEqual([
      { id: "old-a", ledger_seq: "3" },
      { id: "old-b", ledger_seq: "1" },
      { id: "old-big", ledger_seq: "2" },
    ]);
    expect(await recordGrant(pool, { billingAccountId: "old-big", credits: 1n, reference: "big-3", reason: null })).toMatchObject({
      outcome: "out_of_range",
    });
    await recordUsageBatch(pool, { charges: [pricedUsage("big-call", "old-big", 5)], quarantines: [], priceBookHash: "h", lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
    const { rows: big } = await pool.query("SELECT balance_credits FROM accounts WHERE id = 'old-big'");
    expect(big).toEqual([{ balance_credits: "18014398509481977" }]);
    await pool.query("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only");
    await pool.query("DELETE FROM ledger_entries WHERE billing_account_id = 'old-big'");
    await pool.query("DELETE FROM charge_receipts WHERE billing_account_id = 'old-big'");
    await pool.query("DELETE FROM usage_hourly WHERE billing_account_id = 'old-big'");
    await pool.query("DELETE FROM grants WHERE billing_account_id = 'old-big'");
    await pool.query("DELETE FROM bucket_allocations WHERE bucket_id IN (SELECT id FROM credit_buckets WHERE billing_account_id = 'old-big')");
    await pool.query("DELETE FROM credit_buckets WHERE billing_account_id = 'old-big'");
    await pool.query("DELETE FROM accounts WHERE id = 'old-big'");
    await pool.query("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only");
    expect(await reconcileLedger(pool)).toMatchObject({ ok: true, drifts: [] });

    await recordUsageBatch(pool, { charges: [pricedUsage("new-call", "old-a", 25)], quarantines: [], priceBookHash: "h", lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });
    expect(await reconcileLedger(pool)).toMatchObject({ ok: true, drifts: [] });
    const { rows: entries } = await pool.query("SELECT seq, balance_before, balance_after FROM ledger_entries WHERE billing_account_id = 'old-a' ORDER BY seq");
    expect(entries.at(-1)).toEqual({ seq: "4", balance_before: "850", balance_after: "825" });
    const { rows: drawn } = await pool.query("SELECT remaining_credits FROM credit_buckets WHERE billing_account_id = 'old-a'");
    expect(drawn).toEqual([{ remaining_credits: "825" }]);
    // A legacy time edited after the migration breaks the chain there.
    await pool.query("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only");
    await pool.query("UPDATE ledger_entries SET created_at = created_at + interval '1 microsecond' WHERE reference = 'old-call-1'");
    await pool.query("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only");
    expect((await reconcileLedger(pool)).drifts).toEqual([expect.objectContaining({ kind: "hash_mismatch", billingAccountId: "old-a", seq: "2" })]);
  });
});
