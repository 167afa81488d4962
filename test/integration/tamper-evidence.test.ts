import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { recordDebit } from "../../src/books/debits.js";
import { recordGrant } from "../../src/books/grants.js";
import { type Drift, reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { recordUsageBatch } from "../../src/books/record-usage.js";
import { useTestDatabase } from "../support/harness.js";
import { rechain, rewriteBooks, type Rewrite } from "../support/books-rewrite.js";
import { runOps } from "../support/ops-cli.js";
import { pricedUsage } from "../support/usage-events.js";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";

// Each test tampers with its own account, as someone with write access to the database would.
const db = useTestDatabase({ booksTieOut: false });

/**
 * An account with a grant of 1,000 and three charges (100, 50, 25), its entries in order:
 * seq 1 the grant, 2–4 the charges.
 */
async function books(account: string): Promise<{ entryIds: string[]; grantReference: string; callKeys: string[] }> {
  const grantReference = `${account}-grant`;
  await recordGrant(db.pool, { billingAccountId: account, credits: 1000n, reference: grantReference, reason: null });
  const callKeys = [100, 50, 25].map((_, n) => `${account}-call-${n}`);
  for (const [n, credits] of [100, 50, 25].entries()) {
    await recordUsageBatch(db.pool, {
      charges: [pricedUsage(callKeys[n]!, account, credits)],
      quarantines: [],
      priceBookHash: "test",
      lowBalanceThresholds: [],
      enforcement: ENFORCEMENT_OFF,
    });
  }
  const { rows } = await db.pool.query<{ id: string }>("SELECT id FROM ledger_entries WHERE billing_account_id = $1 ORDER BY seq", [account]);
  return { entryIds: rows.map((row) => row.id), grantReference, callKeys };
}

const tamper = (statements: Rewrite[]) => rewriteBooks(db.pool, statements);

async function driftsOf(account: string): Promise<Drift[]> {
  const report = await reconcileLedger(db.pool);
  return report.drifts.filter((drift) => "billingAccountId" in drift && drift.billingAccountId === account);
}

/** Shifts the balances of entries from `fromSeq` on, and the account's, by `credits`. */
function shiftBalances(account: string, fromSeq: number, credits: number): Rewrite[] {
  return [
    [
      "UPDATE ledger_entries SET balance_before = balance_before + $3, balance_after = balance_after + $3 WHERE billing_account_id = $1 AND seq >= $2",
      [account, fromSeq, credits],
    ],
    ["UPDATE accounts SET balance_credits = balance_credits + $2 WHERE id = $1", [account, credits]],
  ];
}

/** The account's one (grant) bucket raised by `credits`, as a tamperer who knows of buckets keeps live credit tied out. */
function mintIntoBucket(account: string, credits: number): Rewrite {
  return ["UPDATE credit_buckets SET credits = credits + $2, remaining_credits = remaining_credits + $2 WHERE billing_account_id = $1", [account, credits]];
}

/** An erased entry's draw given back to its bucket, likewise. */
function unallocate(account: string, entryId: string | undefined, credits: number): Rewrite[] {
  return [
    ["DELETE FROM bucket_allocations WHERE ledger_entry_id = $1", [entryId]],
    ["UPDATE credit_buckets SET remaining_credits = remaining_credits + $2 WHERE billing_account_id = $1", [account, credits]],
  ];
}

async function headsFile(): Promise<string> {
  const heads = await runOps(db, "books", "head", "--json");
  expect(heads.code).toBe(0);
  const file = join(tmpdir(), `spend-ingest-heads-${process.pid}-${Date.now()}.json`);
  writeFileSync(file, heads.stdout);
  return file;
}

/** An account with a grant of 1,000 and a seat fee debited (300): its entries are the grant (seq 1) and the debit (seq 2). */
async function debited(account: string): Promise<{ entryIds: string[]; debitReference: string }> {
  await recordGrant(db.pool, { billingAccountId: account, credits: 1000n, reference: `${account}-grant`, reason: null });
  const debitReference = `${account}-seat-fee`;
  const debit = await recordDebit(
    db.pool,
    { billingAccountId: account, credits: 300n, reference: debitReference, reason: "seat fee" },
    { lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF },
  );
  expect(debit.outcome).toBe("created");
  const { rows } = await db.pool.query<{ id: string }>("SELECT id FROM ledger_entries WHERE billing_account_id = $1 ORDER BY seq", [account]);
  return { entryIds: rows.map((row) => row.id), debitReference };
}

describe("reconcile catches every edit to grants, receipts and ledger entries", () => {
  it("untouched books reconcile ok, and their heads check against themselves", async () => {
    await books("acct-clean");
    expect(await driftsOf("acct-clean")).toEqual([]);
    const file = await headsFile();
    const against = await runOps(db, "reconcile", "--against", file, "--json");
    expect(JSON.parse(against.stdout).drifts.filter((drift: Drift) => "billingAccountId" in drift && drift.billingAccountId === "acct-clean")).toEqual([]);
  });

  it("a grant's credits rewritten", async () => {
    const { entryIds, grantReference } = await books("acct-regrant");
    await tamper([["UPDATE grants SET credits = 1000000 WHERE reference = $1", [grantReference]]]);
    expect(await driftsOf("acct-regrant")).toEqual([
      { kind: "hash_mismatch", billingAccountId: "acct-regrant", entryId: entryIds[0], seq: "1" },
      { kind: "grant_entry_mismatch", billingAccountId: "acct-regrant", entryId: entryIds[0], grantReference, fields: ["amount"] },
    ]);
  });

  it("a grant row deleted", async () => {
    const { entryIds, grantReference } = await books("acct-nogrant");
    await tamper([["DELETE FROM grants WHERE reference = $1", [grantReference]]]);
    expect(await driftsOf("acct-nogrant")).toEqual([
      { kind: "hash_mismatch", billingAccountId: "acct-nogrant", entryId: entryIds[0], seq: "1" },
      { kind: "entry_without_grant", billingAccountId: "acct-nogrant", entryId: entryIds[0] },
    ]);
  });

  it("a million credits minted through a grant's entry, grant and balances all made consistent", async () => {
    const { entryIds, grantReference } = await books("acct-mint");
    await tamper([
      ["UPDATE grants SET credits = credits + 1000000 WHERE reference = $1", [grantReference]],
      ["UPDATE ledger_entries SET amount_credits = amount_credits + 1000000, balance_after = balance_after + 1000000 WHERE id = $1", [entryIds[0]]],
      ...shiftBalances("acct-mint", 2, 1_000_000),
      mintIntoBucket("acct-mint", 1_000_000),
    ]);
    // The balances add up; the hashes do not, from the minted entry on.
    expect(await driftsOf("acct-mint")).toEqual(
      entryIds.map((entryId, n) => ({ kind: "hash_mismatch", billingAccountId: "acct-mint", entryId, seq: String(n + 1) })),
    );
  });

  it("the same mint with every hash recomputed passes reconcile, and fails against heads kept elsewhere", async () => {
    const { entryIds, grantReference } = await books("acct-rechained");
    const file = await headsFile();
    await tamper([
      ["UPDATE grants SET credits = credits + 1000000 WHERE reference = $1", [grantReference]],
      ["UPDATE ledger_entries SET amount_credits = amount_credits + 1000000, balance_after = balance_after + 1000000 WHERE id = $1", [entryIds[0]]],
      ...shiftBalances("acct-rechained", 2, 1_000_000),
      mintIntoBucket("acct-rechained", 1_000_000),
      rechain("acct-rechained"),
    ]);
    expect(await driftsOf("acct-rechained")).toEqual([]);
    const against = await runOps(db, "reconcile", "--against", file, "--json");
    expect(against.code).toBe(1);
    expect(JSON.parse(against.stdout).drifts.filter((drift: Drift) => "billingAccountId" in drift && drift.billingAccountId === "acct-rechained")).toEqual([
      { kind: "head_entry_changed", billingAccountId: "acct-rechained", seq: 4, entryId: entryIds[3] },
    ]);
  });

  it("a whole charge erased from the middle: receipt, entry and balance", async () => {
    const { entryIds, callKeys } = await books("acct-erased");
    await tamper([
      ["DELETE FROM ledger_entries WHERE id = $1", [entryIds[2]]],
      ["DELETE FROM charge_receipts WHERE idempotency_key = $1", [callKeys[1]]],
      ...shiftBalances("acct-erased", 4, 50),
      ...unallocate("acct-erased", entryIds[2], 50),
    ]);
    expect(await driftsOf("acct-erased")).toEqual([
      { kind: "sequence_gap", billingAccountId: "acct-erased", entryId: entryIds[3], seq: "4", expectedSeq: "3" },
      { kind: "hash_mismatch", billingAccountId: "acct-erased", entryId: entryIds[3], seq: "4" },
    ]);
  });

  it("the last charge erased: the sequence number says so; with it lowered too, only kept heads do", async () => {
    const { entryIds, callKeys } = await books("acct-erased-last");
    const file = await headsFile();
    await tamper([
      ["DELETE FROM ledger_entries WHERE id = $1", [entryIds[3]]],
      ["DELETE FROM charge_receipts WHERE idempotency_key = $1", [callKeys[2]]],
      ["UPDATE accounts SET balance_credits = balance_credits + 25 WHERE id = $1", ["acct-erased-last"]],
      ...unallocate("acct-erased-last", entryIds[3], 25),
    ]);
    expect(await driftsOf("acct-erased-last")).toEqual([
      { kind: "head_mismatch", billingAccountId: "acct-erased-last", headSeq: "4", lastSeq: "3" },
    ]);
    // No hash to recompute: a chain cut at its end is a shorter chain. The stored heads know better.
    await tamper([["UPDATE accounts SET ledger_seq = 3 WHERE id = $1", ["acct-erased-last"]]]);
    expect(await driftsOf("acct-erased-last")).toEqual([]);
    const against = await runOps(db, "reconcile", "--against", file);
    expect(against.code).toBe(1);
    expect(against.stdout).toContain('{"kind":"head_entry_missing","billingAccountId":"acct-erased-last","seq":4}');
  });

  it("a guard trigger disabled is reported, whatever the books say", async () => {
    await db.pool.query("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only");
    try {
      const { drifts } = await reconcileLedger(db.pool);
      expect(drifts).toContainEqual({ kind: "guard_disabled", trigger: "ledger_entries_append_only" });
    } finally {
      await db.pool.query("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only");
    }
    expect((await reconcileLedger(db.pool)).drifts.filter((drift) => drift.kind === "guard_disabled")).toEqual([]);
  });

  it("a receipt's charge or key rewritten", async () => {
    const { entryIds, callKeys } = await books("acct-receipt");
    await tamper([
      ["UPDATE charge_receipts SET charged_credits = 1 WHERE idempotency_key = $1", [callKeys[0]]],
      ["UPDATE charge_receipts SET idempotency_key = 'forged' WHERE idempotency_key = $1", [callKeys[1]]],
    ]);
    expect(await driftsOf("acct-receipt")).toEqual([
      { kind: "hash_mismatch", billingAccountId: "acct-receipt", entryId: entryIds[1], seq: "2" },
      { kind: "hash_mismatch", billingAccountId: "acct-receipt", entryId: entryIds[2], seq: "3" },
      expect.objectContaining({ kind: "receipt_entry_mismatch", entryId: entryIds[1], idempotencyKey: callKeys[0], fields: ["amount"] }),
      expect.objectContaining({ kind: "receipt_entry_mismatch", entryId: entryIds[2], idempotencyKey: "forged", fields: ["reference"] }),
    ]);
  });

  it("a receipt's model, tokens or costs, or a grant's reason or time, rewritten", async () => {
    const { entryIds, callKeys, grantReference } = await books("acct-details");
    await tamper([
      ["UPDATE charge_receipts SET model = 'cheaper-model', prompt_tokens = 1 WHERE idempotency_key = $1", [callKeys[0]]],
      ["UPDATE charge_receipts SET provider_cost_usd = 0 WHERE idempotency_key = $1", [callKeys[2]]],
      ["UPDATE grants SET reason = 'promotional', created_at = created_at - interval '1 day' WHERE reference = $1", [grantReference]],
    ]);
    expect(await driftsOf("acct-details")).toEqual(
      [0, 1, 3].map((n) => ({ kind: "hash_mismatch", billingAccountId: "acct-details", entryId: entryIds[n], seq: String(n + 1) })),
    );
  });

  it("an entry's time moved into another month", async () => {
    const { entryIds } = await books("acct-backdated");
    await tamper([["UPDATE ledger_entries SET created_at = created_at - interval '40 days' WHERE id = $1", [entryIds[1]]]]);
    expect(await driftsOf("acct-backdated")).toEqual([{ kind: "hash_mismatch", billingAccountId: "acct-backdated", entryId: entryIds[1], seq: "2" }]);
  });

  it("the service itself cannot change or delete an entry", async () => {
    const { entryIds } = await books("acct-append-only");
    await expect(db.pool.query("UPDATE ledger_entries SET amount_credits = 0 WHERE id = $1", [entryIds[1]])).rejects.toThrow(/append-only/);
    await expect(db.pool.query("DELETE FROM ledger_entries WHERE id = $1", [entryIds[1]])).rejects.toThrow(/append-only/);
    expect(await driftsOf("acct-append-only")).toEqual([]);
  });

  it("a heads file that was edited is refused with exit 2", async () => {
    await books("acct-heads-file");
    const file = await headsFile();
    const heads = JSON.parse(readFileSync(file, "utf8"));
    heads.heads[0].seq += 1;
    writeFileSync(file, JSON.stringify(heads));
    const refused = await runOps(db, "reconcile", "--against", file);
    expect(refused.code).toBe(2);
    expect(refused.stderr.split("\n")[0]).toMatch(/the digest does not match the heads in the file/);
    const missing = await runOps(db, "reconcile", "--against", join(tmpdir(), "no-such-heads.json"));
    expect(missing).toMatchObject({ code: 2 });
    expect(missing.stderr.split("\n")[0]).toBe(`reconcile --against: cannot read ${join(tmpdir(), "no-such-heads.json")}: ENOENT`);
  });
});

describe("reconcile catches every edit to debits, and rows of accounts that do not exist", () => {
  it("a debit's credits rewritten", async () => {
    const { entryIds, debitReference } = await debited("acct-debit-amount");
    await tamper([["UPDATE debits SET credits = 1 WHERE reference = $1", [debitReference]]]);
    expect(await driftsOf("acct-debit-amount")).toEqual([
      { kind: "hash_mismatch", billingAccountId: "acct-debit-amount", entryId: entryIds[1], seq: "2" },
      { kind: "debit_entry_mismatch", billingAccountId: "acct-debit-amount", entryId: entryIds[1], debitReference, fields: ["amount"] },
    ]);
  });

  it("a debit's reason or time rewritten", async () => {
    const { entryIds, debitReference } = await debited("acct-debit-reason");
    await tamper([["UPDATE debits SET reason = 'goodwill', created_at = created_at - interval '1 day' WHERE reference = $1", [debitReference]]]);
    expect(await driftsOf("acct-debit-reason")).toEqual([{ kind: "hash_mismatch", billingAccountId: "acct-debit-reason", entryId: entryIds[1], seq: "2" }]);
  });

  it("a debit row deleted", async () => {
    const { entryIds } = await debited("acct-debit-deleted");
    await tamper([["DELETE FROM debits WHERE billing_account_id = $1", ["acct-debit-deleted"]]]);
    expect(await driftsOf("acct-debit-deleted")).toEqual([
      { kind: "hash_mismatch", billingAccountId: "acct-debit-deleted", entryId: entryIds[1], seq: "2" },
      { kind: "entry_without_debit", billingAccountId: "acct-debit-deleted", entryId: entryIds[1] },
    ]);
  });

  it("a debit and its entry erased, the balance and the buckets put back", async () => {
    const { entryIds } = await debited("acct-debit-erased");
    await tamper([
      ["DELETE FROM ledger_entries WHERE id = $1", [entryIds[1]]],
      ["DELETE FROM debits WHERE billing_account_id = $1", ["acct-debit-erased"]],
      ["UPDATE accounts SET balance_credits = balance_credits + 300 WHERE id = $1", ["acct-debit-erased"]],
      ...unallocate("acct-debit-erased", entryIds[1], 300),
    ]);
    expect(await driftsOf("acct-debit-erased")).toEqual([{ kind: "head_mismatch", billingAccountId: "acct-debit-erased", headSeq: "2", lastSeq: "1" }]);
  });

  it("a debit forged without an entry, on its account or on one that does not exist", async () => {
    await debited("acct-debit-forged");
    await tamper([
      ["INSERT INTO debits (billing_account_id, reference, credits, reason) VALUES ($1, 'forged-debit', 50, 'forged')", ["acct-debit-forged"]],
      ["INSERT INTO debits (billing_account_id, reference, credits, reason) VALUES ($1, 'forged-elsewhere', 50, 'forged')", ["acct-debit-nobody"]],
    ]);
    expect(await driftsOf("acct-debit-forged")).toEqual([{ kind: "debit_without_entry", billingAccountId: "acct-debit-forged", debitReference: "forged-debit" }]);
    expect((await reconcileLedger(db.pool)).drifts).toContainEqual({ kind: "debit_without_account", debitReference: "forged-elsewhere", billingAccountId: "acct-debit-nobody" });
  });

  it("a transfer or a reversal forged for an account that does not exist", async () => {
    await tamper([
      [
        `INSERT INTO transfers (from_account_id, to_account_id, reference, credits, expiration, allow_overdraft)
         VALUES ('acct-from-nobody', 'acct-to-nobody', 'forged-transfer', 50, 'none', false)`,
        [],
      ],
      ["INSERT INTO reversals (receipt_id, billing_account_id, reference, credits, reason) VALUES (0, 'acct-reversed-nobody', 'forged-reversal', 50, 'forged')", []],
    ]);
    const { drifts } = await reconcileLedger(db.pool);
    expect(drifts.filter((drift) => drift.kind === "transfer_without_account" || drift.kind === "reversal_without_account")).toEqual([
      { kind: "transfer_without_account", transferReference: "forged-transfer", billingAccountId: "acct-from-nobody" },
      { kind: "transfer_without_account", transferReference: "forged-transfer", billingAccountId: "acct-to-nobody" },
      { kind: "reversal_without_account", reversalReference: "forged-reversal", billingAccountId: "acct-reversed-nobody" },
    ]);
  });

  it("a debit moved to another account", async () => {
    const { entryIds, debitReference } = await debited("acct-debit-moved");
    await debited("acct-debit-target");
    await tamper([["UPDATE debits SET billing_account_id = 'acct-debit-target' WHERE reference = $1", [debitReference]]]);
    expect(await driftsOf("acct-debit-moved")).toEqual([{ kind: "hash_mismatch", billingAccountId: "acct-debit-moved", entryId: entryIds[1], seq: "2" }]);
    expect(await driftsOf("acct-debit-target")).toEqual([
      { kind: "debit_entry_mismatch", billingAccountId: "acct-debit-target", entryId: entryIds[1], debitReference, fields: ["account"] },
    ]);
  });
});
