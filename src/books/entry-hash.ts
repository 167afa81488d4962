import { createHash } from "node:crypto";
import type { LedgerKind } from "../platform/db/ledger-kinds.js";

/** The hash an account's first entry chains from. */
export const GENESIS_HASH = "";

export type ChainedContent = {
  billingAccountId: string;
  seq: bigint;
  kind: LedgerKind;
  amountCredits: bigint;
  balanceBefore: bigint;
  balanceAfter: bigint;
  reference: string;
  receiptId: string | null;
  grantId: string | null;
  /** The source row of every kind but charge and grant (a debit, transfer, reversal, or the expired bucket). */
  sourceId: string | null;
  /** Posting time in epoch microseconds, PostgreSQL's precision (the service posts whole milliseconds). */
  postedAtMicros: bigint;
  /** SHA-256 of its source's stored content (RECEIPT_CONTENT, GRANT_CONTENT, …); "" with none. */
  sourceDigest: string;
};

/**
 * A ledger entry's hash over the previous entry's hash and its own content, with the digest of
 * its receipt's or grant's: fields joined by '|', each text prefixed by its length in UTF-8
 * bytes (so no two contents share a preimage). The source id of the later kinds is appended only
 * where one is set, so every entry written before them keeps the hash it was chained with.
 * Posting and reconcile both compute it here, never trusting code stored in the database they
 * check; migration 0006 chained the entries written before it the same way in SQL.
 */
export function ledgerEntryHash(previousHash: string, entry: ChainedContent): string {
  const content = `${previousHash}|${lengthPrefixed(entry.billingAccountId)}|${entry.seq}|${entry.kind}|${entry.amountCredits}|${entry.balanceBefore}|${entry.balanceAfter}|${lengthPrefixed(entry.reference)}|${entry.receiptId ?? ""}|${entry.grantId ?? ""}|${entry.postedAtMicros}|${entry.sourceDigest}${entry.sourceId === null ? "" : `|${entry.sourceId}`}`;
  return createHash("sha256").update(content).digest("hex");
}

/**
 * A hex digest as bytea's input text (`\x…`), for a bytea column or array parameter: node-pg would
 * turn a Buffer back into this text anyway, so the digest goes as it is.
 */
export function byteaHex(hex: string): string {
  return `\\x${hex}`;
}

function lengthPrefixed(text: string): string {
  return `${Buffer.byteLength(text, "utf8")}:${text}`;
}

/** The digest of a receipt's or grant's content text, as entries carry it. */
export function sourceDigest(content: string | null): string {
  return content === null ? "" : createHash("sha256").update(content).digest("hex");
}

// Epoch microseconds as text: the same whatever the session's TimeZone or DateStyle.
const micros = (column: string) => `(extract(epoch FROM ${column}) * 1000000)::int8::text`;

// The digests are stored as bytes and the price book by id (migration 0017); the content renders
// them as the text they were chained with: the fingerprint's hex, the price book's hash.
const receiptFields = (priceBookHash: string) => `r.idempotency_key, r.billing_account_id, r.claimed_billing_account_id, r.model,
  r.model_group, r.pricing_source, r.rate_step, r.price_entry, r.pricing_reason, r.reported_cost_usd::text,
  r.provider_cost_usd::text, r.charged_credits::text, r.prompt_tokens, r.completion_tokens, r.cache_read_tokens,
  r.cache_write_tokens, r.reasoning_tokens, encode(r.usage_fingerprint, 'hex'), ${priceBookHash}, ${micros("r.event_time")},
  ${micros("r.created_at")}`;
// Fields added to receipts after entries were first chained: appended only where one is set, so
// every receipt written before them keeps the content (and its entry the hash) it was chained with.
const LATER_RECEIPT_FIELDS = ["r.canonical_model", "r.litellm_margin_usd::text", "r.litellm_discount_usd::text"];

/**
 * Every stored field of a receipt (alias `r`, its price book's hash given as SQL), as one text
 * PostgreSQL writes the same way for the same values in any session: the entry's hash covers its
 * digest, so an edit to any field of a receipt shows. Read when the receipt is written (RETURNING,
 * as its digest) and again by reconcile (joined to price_books as `pb`: RECEIPT_CONTENT).
 */
export function receiptContent(priceBookHash: string): string {
  return `(CASE WHEN num_nonnulls(${LATER_RECEIPT_FIELDS.join(", ")}) = 0
  THEN json_build_array(${receiptFields(priceBookHash)})
  ELSE json_build_array(${receiptFields(priceBookHash)}, ${LATER_RECEIPT_FIELDS.join(", ")}) END)::text`;
}

/** A receipt's content (alias `r`) with its price book joined as `pb`. */
const RECEIPT_CONTENT = receiptContent("pb.hash");

const GRANT_FIELDS = `g.billing_account_id, g.reference, g.credits::text, g.reason, ${micros("g.created_at")}`;

/**
 * Every stored field of a grant (alias `g`), as RECEIPT_CONTENT is for receipts. Expiry and
 * priority came later: appended only where either differs from a grant of before (evergreen, 50).
 */
export const GRANT_CONTENT = `(CASE WHEN g.expires_at IS NULL AND g.priority = 50
  THEN json_build_array(${GRANT_FIELDS})
  ELSE json_build_array(${GRANT_FIELDS}, ${micros("g.expires_at")}, g.priority) END)::text`;

/** Every stored field of a debit (alias `d`). */
export const DEBIT_CONTENT = `json_build_array(d.billing_account_id, d.reference, d.credits::text, d.reason,
  ${micros("d.created_at")})::text`;

/** Every stored field of a transfer (alias `t`): both its entries' hashes cover it. */
export const TRANSFER_CONTENT = `json_build_array(t.from_account_id, t.to_account_id, t.reference, t.credits::text, t.expiration,
  ${micros("t.expires_at")}, t.allow_overdraft, ${micros("t.created_at")})::text`;

/** Every stored field of a reversal (alias `v`). */
export const REVERSAL_CONTENT = `json_build_array(v.receipt_id::text, v.billing_account_id, v.reference, v.credits::text, v.reason,
  ${micros("v.created_at")})::text`;

/**
 * The fields of a credit bucket (alias `b`) that never change: an `expiry` entry's hash covers
 * them. Its remaining credits move with every outflow; reconcile ties them to the allocations.
 */
export const BUCKET_CONTENT = `json_build_array(b.billing_account_id, b.source, b.source_id::text, b.priority,
  ${micros("b.expires_at")}, b.credits::text, ${micros("b.created_at")})::text`;

/**
 * Stored entries with what their hash covers, as `chainedContent` reads them (alias `l`),
 * their receipt's or grant's content included; `where` and `rest` complete the statement.
 */
export function chainedEntriesQuery(where: string, rest = ""): string {
  return `SELECT l.id, encode(l.hash, 'hex') AS hash, l.billing_account_id, l.seq, l.kind, l.amount_credits, l.balance_before, l.balance_after,
            l.reference, l.receipt_id, l.grant_id, l.source_id, ${micros("l.created_at")} AS posted_us,
            CASE l.kind WHEN 'charge' THEN ${RECEIPT_CONTENT} WHEN 'grant' THEN ${GRANT_CONTENT}
                        WHEN 'expiry' THEN ${BUCKET_CONTENT} WHEN 'debit' THEN ${DEBIT_CONTENT}
                        WHEN 'transfer_out' THEN ${TRANSFER_CONTENT} WHEN 'transfer_in' THEN ${TRANSFER_CONTENT}
                        WHEN 'reversal' THEN ${REVERSAL_CONTENT} END AS source_content
     FROM ledger_entries l
     LEFT JOIN charge_receipts r ON r.id = l.receipt_id
     LEFT JOIN price_books pb ON pb.id = r.price_book_id
     LEFT JOIN grants g ON g.id = l.grant_id
     LEFT JOIN credit_buckets b ON l.kind = 'expiry' AND b.id = l.source_id
     LEFT JOIN debits d ON l.kind = 'debit' AND d.id = l.source_id
     LEFT JOIN transfers t ON l.kind IN ('transfer_out', 'transfer_in') AND t.id = l.source_id
     LEFT JOIN reversals v ON l.kind = 'reversal' AND v.id = l.source_id
     WHERE ${where} ${rest}`;
}

export type ChainedRow = {
  id: string;
  hash: string;
  billing_account_id: string;
  seq: string;
  kind: LedgerKind;
  amount_credits: string;
  balance_before: string;
  balance_after: string;
  reference: string;
  receipt_id: string | null;
  grant_id: string | null;
  source_id: string | null;
  posted_us: string;
  source_content: string | null;
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
    sourceId: row.source_id,
    postedAtMicros: BigInt(row.posted_us),
    sourceDigest: sourceDigest(row.source_content),
  };
}
