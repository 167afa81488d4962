import type pg from "pg";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { type ChainedRow, chainedContent, chainedEntriesQuery, GENESIS_HASH, ledgerEntryHash } from "./entry-hash.js";
import { type UsageMismatch, usageMismatches, usageWithoutAccount } from "./usage-rollup.js";

export type Drift =
  | { kind: "balance_mismatch"; billingAccountId: string; balance: string; ledgerSum: string }
  | { kind: "balance_out_of_bound"; billingAccountId: string; balance: string }
  | { kind: "guard_disabled"; trigger: string }
  | { kind: "head_mismatch"; billingAccountId: string; headSeq: string; lastSeq: string }
  | { kind: "sequence_gap"; billingAccountId: string; entryId: string; seq: string; expectedSeq: string }
  | { kind: "chain_break"; billingAccountId: string; entryId: string; balanceBefore: string; expected: string }
  | { kind: "hash_mismatch"; billingAccountId: string; entryId: string; seq: string }
  | { kind: "receipt_without_entry"; billingAccountId: string; idempotencyKey: string }
  | { kind: "entry_without_receipt"; billingAccountId: string; entryId: string }
  | { kind: "receipt_entry_mismatch"; billingAccountId: string; entryId: string; idempotencyKey: string; fields: string[] }
  | { kind: "grant_without_entry"; billingAccountId: string; grantReference: string }
  | { kind: "entry_without_grant"; billingAccountId: string; entryId: string }
  | { kind: "grant_entry_mismatch"; billingAccountId: string; entryId: string; grantReference: string; fields: string[] }
  | { kind: "receipt_without_account"; idempotencyKey: string; billingAccountId: string }
  | { kind: "grant_without_account"; grantReference: string; billingAccountId: string }
  | { kind: "entry_without_account"; entryId: string; billingAccountId: string }
  | { kind: "debit_without_account"; debitReference: string; billingAccountId: string }
  | { kind: "transfer_without_account"; transferReference: string; billingAccountId: string }
  | { kind: "reversal_without_account"; reversalReference: string; billingAccountId: string }
  | { kind: "debit_without_entry"; billingAccountId: string; debitReference: string }
  | { kind: "entry_without_debit"; billingAccountId: string; entryId: string }
  | { kind: "debit_entry_mismatch"; billingAccountId: string; entryId: string; debitReference: string; fields: string[] }
  | { kind: "transfer_without_entry"; billingAccountId: string; transferReference: string }
  | { kind: "entry_without_transfer"; billingAccountId: string; entryId: string }
  | { kind: "transfer_entry_mismatch"; billingAccountId: string; entryId: string; transferReference: string; fields: string[] }
  | { kind: "reversal_without_entry"; billingAccountId: string; reversalReference: string }
  | { kind: "entry_without_reversal"; billingAccountId: string; entryId: string }
  | { kind: "reversal_entry_mismatch"; billingAccountId: string; entryId: string; reversalReference: string; fields: string[] }
  | { kind: "live_credit_mismatch"; billingAccountId: string; balance: string; liveCredits: string }
  | { kind: "bucket_mismatch"; billingAccountId: string; bucketId: string; credits: string; remaining: string; allocated: string; expired: boolean }
  | ({ kind: "usage_rollup_mismatch" } & UsageMismatch);

export type ReconcileReport = { ok: boolean; accountsChecked: number; drifts: Drift[] };

const ACCOUNTS_PER_PAGE = 500;

// Raw SQL throughout: each check is one set-based statement over a page of accounts (aggregates,
// lateral joins, anti-joins), read the way an auditor would read it in psql.

/**
 * Checks that the books tie out and that nothing in them was changed, one page of accounts at
 * a time: every balance equals the sum of its ledger; each account's entries are numbered
 * 1, 2, … without a gap, each starts where the previous one ended and carries the hash of its
 * content chained onto the previous entry's (so an edited, inserted or deleted entry breaks
 * the chain there); the account's sequence number is its last entry's; and every receipt and every
 * grant has exactly one ledger entry of its account, amount and reference (the unique indexes
 * on receipt_id and grant_id rule out two), and every entry its receipt or grant. The live
 * buckets of each account hold exactly its balance when positive (nothing otherwise), and each
 * bucket's remaining credits are its credits less what outflows drew from it (none once expired).
 * Each account's usage_hourly rows are the aggregate of its receipts.
 */
export async function reconcileLedger(
  pool: pg.Pool,
  options: { onProgress?: (accountsChecked: number) => void } = {},
): Promise<ReconcileReport> {
  const drifts: Drift[] = [];
  let accountsChecked = 0;
  let after = "";
  for (;;) {
    const { rows: page } = await pool.query<{ id: string }>(
      "SELECT id FROM accounts WHERE id > $1 ORDER BY id LIMIT $2",
      [after, ACCOUNTS_PER_PAGE],
    );
    if (page.length === 0) break;
    const ids = page.map((row) => row.id);
    accountsChecked += ids.length;
    after = ids[ids.length - 1]!;
    drifts.push(
      ...(await balanceDrifts(pool, ids)),
      ...(await boundDrifts(pool, ids)),
      ...(await headDrifts(pool, ids)),
      ...(await chainDrifts(pool, ids)),
      ...(await receiptDrifts(pool, ids)),
      ...(await grantDrifts(pool, ids)),
      ...(await debitDrifts(pool, ids)),
      ...(await transferDrifts(pool, ids)),
      ...(await reversalDrifts(pool, ids)),
      ...(await bucketDrifts(pool, ids)),
      ...(await usageMismatches(pool, ids)).map((mismatch): Drift => ({ kind: "usage_rollup_mismatch", ...mismatch })),
    );
    options.onProgress?.(accountsChecked);
  }
  drifts.push(
    ...(await receiptsWithoutEntry(pool)),
    ...(await accountlessDrifts(pool)),
    ...(await usageWithoutAccount(pool)).map((mismatch): Drift => ({ kind: "usage_rollup_mismatch", ...mismatch })),
    ...(await guardDrifts(pool)),
  );
  return { ok: drifts.length === 0, accountsChecked, drifts };
}

const ACCOUNTLESS_SHOWN = 1000;

/**
 * Receipts, grants, debits, transfers (either side), reversals and entries naming an account that
 * does not exist, which the account pages cannot see.
 */
async function accountlessDrifts(pool: pg.Pool): Promise<Drift[]> {
  // Each source's rows whose account (`account`, a column of `s`) is missing, with its reference.
  const missing = async (table: string, reference: string, account: string) =>
    (
      await pool.query<{ reference: string; account: string }>(
        `SELECT s.${reference} AS reference, s.${account} AS account FROM ${table} s
         WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = s.${account}) ORDER BY s.id LIMIT $1`,
        [ACCOUNTLESS_SHOWN],
      )
    ).rows;
  return [
    ...(await missing("charge_receipts", "idempotency_key", "billing_account_id")).map(
      (row): Drift => ({ kind: "receipt_without_account", idempotencyKey: row.reference, billingAccountId: row.account }),
    ),
    ...(await missing("grants", "reference", "billing_account_id")).map(
      (row): Drift => ({ kind: "grant_without_account", grantReference: row.reference, billingAccountId: row.account }),
    ),
    ...(await missing("debits", "reference", "billing_account_id")).map(
      (row): Drift => ({ kind: "debit_without_account", debitReference: row.reference, billingAccountId: row.account }),
    ),
    ...[...(await missing("transfers", "reference", "from_account_id")), ...(await missing("transfers", "reference", "to_account_id"))].map(
      (row): Drift => ({ kind: "transfer_without_account", transferReference: row.reference, billingAccountId: row.account }),
    ),
    ...(await missing("reversals", "reference", "billing_account_id")).map(
      (row): Drift => ({ kind: "reversal_without_account", reversalReference: row.reference, billingAccountId: row.account }),
    ),
    ...(await missing("ledger_entries", "id", "billing_account_id")).map(
      (row): Drift => ({ kind: "entry_without_account", entryId: row.reference, billingAccountId: row.account }),
    ),
  ];
}

async function balanceDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { rows } = await pool.query<{ id: string; balance: string; ledger_sum: string }>(
    `SELECT a.id, a.balance_credits AS balance, coalesce(l.total, 0) AS ledger_sum
     FROM accounts a
     LEFT JOIN (SELECT billing_account_id, sum(amount_credits) AS total FROM ledger_entries
                WHERE billing_account_id = ANY($1::text[]) GROUP BY billing_account_id) l
       ON l.billing_account_id = a.id
     WHERE a.id = ANY($1::text[]) AND a.balance_credits <> coalesce(l.total, 0)`,
    [ids],
  );
  return rows.map((row) => ({
    kind: "balance_mismatch",
    billingAccountId: row.id,
    balance: row.balance,
    ledgerSum: row.ledger_sum,
  }));
}

/** The sequence number kept on the account row must be its last entry's. */
async function headDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { rows } = await pool.query<{ id: string; ledger_seq: string; last_seq: string }>(
    `SELECT a.id, a.ledger_seq, coalesce(l.seq, 0) AS last_seq
     FROM accounts a
     LEFT JOIN LATERAL (SELECT seq FROM ledger_entries WHERE billing_account_id = a.id ORDER BY seq DESC LIMIT 1) l ON true
     WHERE a.id = ANY($1::text[]) AND a.ledger_seq <> coalesce(l.seq, 0)`,
    [ids],
  );
  return rows.map((row) => ({ kind: "head_mismatch", billingAccountId: row.id, headSeq: row.ledger_seq, lastSeq: row.last_seq }));
}

const ENTRIES_PER_PAGE = 5000;

/**
 * Walks each account's entries in sequence order, recomputing every hash here (with the code
 * that posts them, not a function stored in the database being checked). Reports where the
 * numbering skips, a balance does not continue, or a hash does not match.
 */
async function chainDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const drifts: Drift[] = [];
  type Walked = { account: string; seq: bigint; balanceAfter: bigint; hash: string };
  let previous: Walked | null = null;
  let after: [string, string] = ["", "0"];
  for (;;) {
    const { rows } = await pool.query<ChainedRow>(
      chainedEntriesQuery(
        "l.billing_account_id = ANY($1::text[]) AND (l.billing_account_id, l.seq) > ($2, $3::int8)",
        "ORDER BY l.billing_account_id, l.seq LIMIT $4",
      ),
      [ids, after[0], after[1], ENTRIES_PER_PAGE],
    );
    if (rows.length === 0) return drifts;
    for (const row of rows) {
      const continues: Walked | null = previous?.account === row.billing_account_id ? previous : null;
      const entry = chainedContent(row);
      const at = { billingAccountId: row.billing_account_id, entryId: row.id };
      const expectedSeq: bigint = (continues?.seq ?? 0n) + 1n;
      if (entry.seq !== expectedSeq) drifts.push({ kind: "sequence_gap", ...at, seq: row.seq, expectedSeq: expectedSeq.toString() });
      const expectedBefore = continues?.balanceAfter ?? 0n;
      if (entry.balanceBefore !== expectedBefore) {
        drifts.push({ kind: "chain_break", ...at, balanceBefore: row.balance_before, expected: expectedBefore.toString() });
      }
      if (ledgerEntryHash(continues?.hash ?? GENESIS_HASH, entry) !== row.hash) drifts.push({ kind: "hash_mismatch", ...at, seq: row.seq });
      previous = { account: row.billing_account_id, seq: entry.seq, balanceAfter: entry.balanceAfter, hash: row.hash };
    }
    const last = rows[rows.length - 1]!;
    after = [last.billing_account_id, last.seq];
  }
}

/** Balances beyond ±(2^53 − 1), which only books written before the bound can hold. */
async function boundDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { rows } = await pool.query<{ id: string; balance_credits: string }>(
    "SELECT id, balance_credits FROM accounts WHERE id = ANY($1::text[]) AND balance_credits NOT BETWEEN -$2::int8 AND $2::int8",
    [ids, MAX_CREDITS.toString()],
  );
  return rows.map((row) => ({ kind: "balance_out_of_bound", billingAccountId: row.id, balance: row.balance_credits }));
}

// What keeps the service itself from rewriting or back-dating the books (drizzle/0006).
const LEDGER_GUARDS = ["ledger_entries_append_only", "ledger_entries_commit_promptly"];

/** Each guard trigger present and enabled ('O': fires in normal sessions). */
async function guardDrifts(pool: pg.Pool): Promise<Drift[]> {
  const { rows } = await pool.query<{ tgname: string; tgenabled: string }>(
    "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'ledger_entries'::regclass AND tgname = ANY($1::text[])",
    [LEDGER_GUARDS],
  );
  const enabled = new Set(rows.filter((row) => row.tgenabled === "O").map((row) => row.tgname));
  return LEDGER_GUARDS.filter((guard) => !enabled.has(guard)).map((trigger): Drift => ({ kind: "guard_disabled", trigger }));
}

/**
 * A receipt, grant, debit, reversal or either side of a transfer: each has exactly one ledger
 * entry of its kind, account, amount and reference.
 */
type EntrySource = {
  table: "charge_receipts" | "grants" | "debits" | "transfers" | "reversals";
  entryKind: "charge" | "grant" | "debit" | "transfer_out" | "transfer_in" | "reversal";
  /** The source's column naming the account the entry moves. */
  account: "billing_account_id" | "from_account_id" | "to_account_id";
  /** source_id is shared by the later kinds: its join also names the kind. */
  entryColumn: "receipt_id" | "grant_id" | "source_id";
  reference: "idempotency_key" | "reference";
  /** The entry amount the source stands for. */
  amount: string;
  /**
   * Receipts have no index by account (it cost every charge an index write): they are reached
   * from their accounts' entries, and those without an entry are found by one scan after the
   * pages (receiptsWithoutEntry). The other sources are few and read by account.
   */
  reachedFromEntries?: true;
};

const RECEIPTS: EntrySource = {
  table: "charge_receipts",
  entryKind: "charge",
  account: "billing_account_id",
  entryColumn: "receipt_id",
  reference: "idempotency_key",
  amount: "-s.charged_credits",
  reachedFromEntries: true,
};
const GRANTS: EntrySource = { table: "grants", entryKind: "grant", account: "billing_account_id", entryColumn: "grant_id", reference: "reference", amount: "s.credits" };
const DEBITS: EntrySource = { table: "debits", entryKind: "debit", account: "billing_account_id", entryColumn: "source_id", reference: "reference", amount: "-s.credits" };
const TRANSFERS_OUT: EntrySource = { table: "transfers", entryKind: "transfer_out", account: "from_account_id", entryColumn: "source_id", reference: "reference", amount: "-s.credits" };
const TRANSFERS_IN: EntrySource = { table: "transfers", entryKind: "transfer_in", account: "to_account_id", entryColumn: "source_id", reference: "reference", amount: "s.credits" };
const REVERSALS: EntrySource = { table: "reversals", entryKind: "reversal", account: "billing_account_id", entryColumn: "source_id", reference: "reference", amount: "s.credits" };

type SourceMismatch = { account: string; reference: string; entryId: string | null; fields: string[] };

/** Sources of these accounts whose entry is missing or differs, and their entries whose source is gone. */
async function sourceDrifts(
  pool: pg.Pool,
  ids: string[],
  source: EntrySource,
): Promise<{ mismatches: SourceMismatch[]; orphans: Array<{ account: string; entryId: string }> }> {
  const sameKind = source.entryColumn === "source_id" ? ` AND l.kind = '${source.entryKind}'` : "";
  const { rows } = await pool.query<{
    account: string;
    reference: string;
    amount: string;
    entry_id: string | null;
    kind: string | null;
    entry_amount: string | null;
    entry_account: string | null;
    entry_reference: string | null;
  }>(
    `SELECT s.${source.account} AS account, s.${source.reference} AS reference, ${source.amount} AS amount, l.id AS entry_id,
            l.kind, l.amount_credits AS entry_amount, l.billing_account_id AS entry_account, l.reference AS entry_reference
     FROM ${source.table} s ${source.reachedFromEntries ? "" : "LEFT "}JOIN ledger_entries l ON l.${source.entryColumn} = s.id${sameKind}
     WHERE ${source.reachedFromEntries ? "l.billing_account_id" : `s.${source.account}`} = ANY($1::text[])
       AND (l.id IS NULL OR l.kind <> '${source.entryKind}' OR l.amount_credits <> ${source.amount}
            OR l.billing_account_id <> s.${source.account} OR l.reference <> s.${source.reference})`,
    [ids],
  );
  const { rows: orphans } = await pool.query<{ account: string; id: string }>(
    `SELECT l.billing_account_id AS account, l.id FROM ledger_entries l
     WHERE l.billing_account_id = ANY($1::text[]) AND l.kind = '${source.entryKind}'
       AND NOT EXISTS (SELECT 1 FROM ${source.table} s WHERE s.id = l.${source.entryColumn})`,
    [ids],
  );
  return {
    mismatches: rows.map((row) => ({
      account: row.account,
      reference: row.reference,
      entryId: row.entry_id,
      fields: Object.entries({
        kind: [source.entryKind, row.kind],
        amount: [row.amount, row.entry_amount],
        account: [row.account, row.entry_account],
        reference: [row.reference, row.entry_reference],
      })
        .filter(([, [expected, found]]) => expected !== found)
        .map(([field]) => field),
    })),
    orphans: orphans.map((row) => ({ account: row.account, entryId: row.id })),
  };
}

/**
 * Receipts of existing accounts without an entry, in one scan of the receipts with an index probe
 * each (reconcile reads every receipt through the chain anyway); receipts of accounts that do not
 * exist are accountlessDrifts'.
 */
async function receiptsWithoutEntry(pool: pg.Pool): Promise<Drift[]> {
  const { rows } = await pool.query<{ account: string; reference: string }>(
    `SELECT s.billing_account_id AS account, s.idempotency_key AS reference FROM charge_receipts s
     WHERE NOT EXISTS (SELECT 1 FROM ledger_entries l WHERE l.receipt_id = s.id)
       AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = s.billing_account_id)
     ORDER BY s.id LIMIT $1`,
    [ACCOUNTLESS_SHOWN],
  );
  return rows.map((row): Drift => ({ kind: "receipt_without_entry", billingAccountId: row.account, idempotencyKey: row.reference }));
}

async function receiptDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { mismatches, orphans } = await sourceDrifts(pool, ids, RECEIPTS);
  return [
    ...mismatches.map(({ account, reference, entryId, fields }): Drift =>
      entryId === null
        ? { kind: "receipt_without_entry", billingAccountId: account, idempotencyKey: reference }
        : { kind: "receipt_entry_mismatch", billingAccountId: account, entryId, idempotencyKey: reference, fields },
    ),
    ...orphans.map(({ account, entryId }): Drift => ({ kind: "entry_without_receipt", billingAccountId: account, entryId })),
  ];
}

async function grantDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { mismatches, orphans } = await sourceDrifts(pool, ids, GRANTS);
  return [
    ...mismatches.map(({ account, reference, entryId, fields }): Drift =>
      entryId === null
        ? { kind: "grant_without_entry", billingAccountId: account, grantReference: reference }
        : { kind: "grant_entry_mismatch", billingAccountId: account, entryId, grantReference: reference, fields },
    ),
    ...orphans.map(({ account, entryId }): Drift => ({ kind: "entry_without_grant", billingAccountId: account, entryId })),
  ];
}

async function debitDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { mismatches, orphans } = await sourceDrifts(pool, ids, DEBITS);
  return [
    ...mismatches.map(({ account, reference, entryId, fields }): Drift =>
      entryId === null
        ? { kind: "debit_without_entry", billingAccountId: account, debitReference: reference }
        : { kind: "debit_entry_mismatch", billingAccountId: account, entryId, debitReference: reference, fields },
    ),
    ...orphans.map(({ account, entryId }): Drift => ({ kind: "entry_without_debit", billingAccountId: account, entryId })),
  ];
}

async function transferDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const drifts: Drift[] = [];
  for (const side of [TRANSFERS_OUT, TRANSFERS_IN]) {
    const { mismatches, orphans } = await sourceDrifts(pool, ids, side);
    drifts.push(
      ...mismatches.map(({ account, reference, entryId, fields }): Drift =>
        entryId === null
          ? { kind: "transfer_without_entry", billingAccountId: account, transferReference: reference }
          : { kind: "transfer_entry_mismatch", billingAccountId: account, entryId, transferReference: reference, fields },
      ),
      ...orphans.map(({ account, entryId }): Drift => ({ kind: "entry_without_transfer", billingAccountId: account, entryId })),
    );
  }
  return drifts;
}

async function reversalDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { mismatches, orphans } = await sourceDrifts(pool, ids, REVERSALS);
  return [
    ...mismatches.map(({ account, reference, entryId, fields }): Drift =>
      entryId === null
        ? { kind: "reversal_without_entry", billingAccountId: account, reversalReference: reference }
        : { kind: "reversal_entry_mismatch", billingAccountId: account, entryId, reversalReference: reference, fields },
    ),
    ...orphans.map(({ account, entryId }): Drift => ({ kind: "entry_without_reversal", billingAccountId: account, entryId })),
  ];
}

/**
 * Live credit ties out: the remaining credits of an account's buckets sum to its balance when
 * that is positive and to 0 otherwise (debt is settled before any credit goes live), and each
 * bucket holds its credits less its account's allocations to it, between 0 and its credits, 0
 * once expired. So a bucket's remaining credits edited by hand show here, as an edited balance
 * shows in the chain.
 */
async function bucketDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { rows: accounts } = await pool.query<{ id: string; balance: string; live: string }>(
    `SELECT a.id, a.balance_credits AS balance, coalesce(b.live, 0) AS live
     FROM accounts a
     LEFT JOIN (SELECT billing_account_id, sum(remaining_credits) AS live FROM credit_buckets
                WHERE billing_account_id = ANY($1::text[]) AND remaining_credits <> 0 GROUP BY billing_account_id) b
       ON b.billing_account_id = a.id
     WHERE a.id = ANY($1::text[]) AND coalesce(b.live, 0) <> greatest(a.balance_credits, 0)`,
    [ids],
  );
  const { rows: buckets } = await pool.query<{
    id: string;
    billing_account_id: string;
    credits: string;
    remaining_credits: string;
    allocated: string;
    expired: boolean;
  }>(
    // A bucket's allocations are reached through its own account's entries, so one made by another
    // account's entry leaves the bucket short here.
    `WITH allocated AS (
       SELECT l.billing_account_id, a.bucket_id, sum(a.credits) AS allocated
       FROM ledger_entries l JOIN bucket_allocations a ON a.ledger_entry_id = l.id
       WHERE l.billing_account_id = ANY($1::text[]) GROUP BY l.billing_account_id, a.bucket_id)
     SELECT b.id, b.billing_account_id, b.credits, b.remaining_credits, coalesce(s.allocated, 0) AS allocated,
            b.expired_at IS NOT NULL AS expired
     FROM credit_buckets b LEFT JOIN allocated s ON s.bucket_id = b.id AND s.billing_account_id = b.billing_account_id
     WHERE b.billing_account_id = ANY($1::text[])
       AND (b.remaining_credits NOT BETWEEN 0 AND b.credits OR (b.expired_at IS NOT NULL AND b.remaining_credits <> 0)
            OR b.remaining_credits <> b.credits - coalesce(s.allocated, 0))
     ORDER BY b.id`,
    [ids],
  );
  return [
    ...accounts.map((row): Drift => ({ kind: "live_credit_mismatch", billingAccountId: row.id, balance: row.balance, liveCredits: row.live })),
    ...buckets.map((row): Drift => ({
      kind: "bucket_mismatch",
      billingAccountId: row.billing_account_id,
      bucketId: row.id,
      credits: row.credits,
      remaining: row.remaining_credits,
      allocated: row.allocated,
      expired: row.expired,
    })),
  ];
}
