import { createHash } from "node:crypto";

/** The hash an account's first entry chains from. */
export const GENESIS_HASH = "";

export type ChainedContent = {
  billingAccountId: string;
  seq: bigint;
  kind: "charge" | "grant";
  amountCredits: bigint;
  balanceBefore: bigint;
  balanceAfter: bigint;
  reference: string;
  receiptId: string | null;
  grantId: string | null;
  /** Posting time in epoch microseconds, PostgreSQL's precision (the service posts whole milliseconds). */
  postedAtMicros: bigint;
};

/**
 * A ledger entry's hash over the previous entry's hash and its own content: fields joined by
 * '|', each text prefixed by its length in UTF-8 bytes (so no two contents share a preimage).
 * Posting and reconcile both compute it here, never trusting code stored in the database they
 * check; migration 0006 chained the entries written before it the same way in SQL.
 */
export function ledgerEntryHash(previousHash: string, entry: ChainedContent): string {
  const content = `${previousHash}|${lengthPrefixed(entry.billingAccountId)}|${entry.seq}|${entry.kind}|${entry.amountCredits}|${entry.balanceBefore}|${entry.balanceAfter}|${lengthPrefixed(entry.reference)}|${entry.receiptId ?? ""}|${entry.grantId ?? ""}|${entry.postedAtMicros}`;
  return createHash("sha256").update(content).digest("hex");
}

function lengthPrefixed(text: string): string {
  return `${Buffer.byteLength(text, "utf8")}:${text}`;
}

/** The columns of a stored entry its hash covers, as `chainedContent` reads them. */
export const CHAINED_COLUMNS = `billing_account_id, seq, kind, amount_credits, balance_before, balance_after, reference,
  receipt_id, grant_id, (extract(epoch FROM created_at) * 1000000)::int8 AS posted_us`;

export type ChainedRow = {
  billing_account_id: string;
  seq: string;
  kind: "charge" | "grant";
  amount_credits: string;
  balance_before: string;
  balance_after: string;
  reference: string;
  receipt_id: string | null;
  grant_id: string | null;
  posted_us: string;
};

export function chainedContent(row: ChainedRow): ChainedContent {
  return {
    billingAccountId: row.billing_account_id,
    seq: BigInt(row.seq),
    kind: row.kind,
    amountCredits: BigInt(row.amount_credits),
    balanceBefore: BigInt(row.balance_before),
    balanceAfter: BigInt(row.balance_after),
    reference: row.reference,
    receiptId: row.receipt_id,
    grantId: row.grant_id,
    postedAtMicros: BigInt(row.posted_us),
  };
}
