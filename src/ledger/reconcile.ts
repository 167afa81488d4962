import type pg from "pg";

export type Drift =
  | { kind: "balance_mismatch"; billingAccountId: string; balance: string; ledgerSum: string }
  | { kind: "chain_break"; billingAccountId: string; entryId: string; balanceBefore: string; expected: string }
  | { kind: "receipt_without_entry"; idempotencyKey: string }
  | { kind: "entry_without_receipt"; billingAccountId: string; entryId: string }
  | { kind: "receipt_without_account"; idempotencyKey: string; billingAccountId: string }
  | { kind: "entry_without_account"; entryId: string; billingAccountId: string }
  | { kind: "entry_amount_mismatch"; idempotencyKey: string; chargedCredits: string; amountCredits: string }
  | { kind: "entry_account_mismatch"; idempotencyKey: string; receiptAccount: string; entryAccount: string };

export type ReconcileReport = { ok: boolean; accountsChecked: number; drifts: Drift[] };

const ACCOUNTS_PER_PAGE = 500;

/**
 * Checks that the books tie out, one page of accounts at a time: every balance equals the
 * sum of its ledger, each entry starts where the previous one ended, and every receipt has
 * exactly one ledger entry of its amount (the unique index on receipt_id rules out two).
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
    drifts.push(...(await balanceDrifts(pool, ids)), ...(await chainDrifts(pool, ids)), ...(await receiptDrifts(pool, ids)));
    options.onProgress?.(accountsChecked);
  }
  drifts.push(...(await accountlessDrifts(pool)));
  return { ok: drifts.length === 0, accountsChecked, drifts };
}

const ACCOUNTLESS_SHOWN = 1000;

/** Receipts and entries naming an account that does not exist, which the account pages cannot see. */
async function accountlessDrifts(pool: pg.Pool): Promise<Drift[]> {
  const { rows: receipts } = await pool.query<{ idempotency_key: string; billing_account_id: string }>(
    `SELECT r.idempotency_key, r.billing_account_id FROM charge_receipts r
     WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = r.billing_account_id) ORDER BY r.id LIMIT $1`,
    [ACCOUNTLESS_SHOWN],
  );
  const { rows: entries } = await pool.query<{ id: string; billing_account_id: string }>(
    `SELECT l.id, l.billing_account_id FROM ledger_entries l
     WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = l.billing_account_id) ORDER BY l.id LIMIT $1`,
    [ACCOUNTLESS_SHOWN],
  );
  return [
    ...receipts.map((row): Drift => ({ kind: "receipt_without_account", idempotencyKey: row.idempotency_key, billingAccountId: row.billing_account_id })),
    ...entries.map((row): Drift => ({ kind: "entry_without_account", entryId: row.id, billingAccountId: row.billing_account_id })),
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

async function chainDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { rows } = await pool.query<{ billing_account_id: string; id: string; balance_before: string; expected: string }>(
    `SELECT billing_account_id, id, balance_before, expected FROM (
       SELECT billing_account_id, id, balance_before,
              coalesce(lag(balance_after) OVER (PARTITION BY billing_account_id ORDER BY id), 0) AS expected
       FROM ledger_entries WHERE billing_account_id = ANY($1::text[])) chain
     WHERE balance_before <> expected`,
    [ids],
  );
  return rows.map((row) => ({
    kind: "chain_break",
    billingAccountId: row.billing_account_id,
    entryId: row.id,
    balanceBefore: row.balance_before,
    expected: row.expected,
  }));
}

async function receiptDrifts(pool: pg.Pool, ids: string[]): Promise<Drift[]> {
  const { rows } = await pool.query<{
    idempotency_key: string;
    billing_account_id: string;
    charged_credits: string;
    amount_credits: string | null;
    entry_account: string | null;
  }>(
    `SELECT r.idempotency_key, r.billing_account_id, r.charged_credits, l.amount_credits, l.billing_account_id AS entry_account
     FROM charge_receipts r LEFT JOIN ledger_entries l ON l.receipt_id = r.id
     WHERE r.billing_account_id = ANY($1::text[])
       AND (l.id IS NULL OR l.amount_credits <> -r.charged_credits OR l.billing_account_id <> r.billing_account_id)`,
    [ids],
  );
  const { rows: orphans } = await pool.query<{ billing_account_id: string; id: string }>(
    `SELECT l.billing_account_id, l.id FROM ledger_entries l LEFT JOIN charge_receipts r ON r.id = l.receipt_id
     WHERE l.billing_account_id = ANY($1::text[]) AND l.kind = 'charge' AND r.id IS NULL`,
    [ids],
  );
  const orphanDrifts = orphans.map(
    (row): Drift => ({ kind: "entry_without_receipt", billingAccountId: row.billing_account_id, entryId: row.id }),
  );
  return rows
    .map((row): Drift => {
      if (row.amount_credits === null || row.entry_account === null) {
        return { kind: "receipt_without_entry", idempotencyKey: row.idempotency_key };
      }
      if (row.entry_account !== row.billing_account_id) {
        return {
          kind: "entry_account_mismatch",
          idempotencyKey: row.idempotency_key,
          receiptAccount: row.billing_account_id,
          entryAccount: row.entry_account,
        };
      }
      return {
        kind: "entry_amount_mismatch",
        idempotencyKey: row.idempotency_key,
        chargedCredits: row.charged_credits,
        amountCredits: row.amount_credits,
      };
    })
    .concat(orphanDrifts);
}
