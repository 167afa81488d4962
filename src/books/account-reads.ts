import { and, asc, desc, eq, gt, isNotNull, lt, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Db } from "../platform/db/client.js";
import type { BucketSource, LedgerKind } from "../platform/db/ledger-kinds.js";
import { accounts, chargeReceipts, creditBuckets, ledgerEntries, priceBooks, reversals } from "../platform/db/schema.js";
import { BUCKET_REFERENCE } from "./credit-buckets.js";

export type LedgerEntry = typeof ledgerEntries.$inferSelect;
/** A receipt with its price book's hash, the balance its entry left and what its reversals gave back in all. */
export type ChargeReceipt = typeof chargeReceipts.$inferSelect & { priceBookHash: string; balanceAfter: bigint | null; reversedCredits: bigint };

export type BalanceStatus = "ok" | "low" | "negative";

/** `negative` below zero, `low` below the highest low-balance threshold, else `ok`. */
export function balanceStatus(balance: bigint, lowBalanceThresholds: readonly bigint[]): BalanceStatus {
  if (balance < 0n) return "negative";
  const highest = lowBalanceThresholds[0];
  return highest !== undefined && balance < highest ? "low" : "ok";
}

export async function findAccountBalance(db: Db, billingAccountId: string): Promise<bigint | null> {
  const [row] = await db
    .select({ balance: accounts.balanceCredits })
    .from(accounts)
    .where(eq(accounts.id, billingAccountId));
  return row?.balance ?? null;
}

/**
 * Newest first; `beforeId` (an entry id, the API's cursor) continues from the previous page's
 * last entry. Pages go by sequence number, which orders an account's entries as their ids do.
 */
export async function listLedgerEntries(
  db: Db,
  billingAccountId: string,
  options: { limit: number; beforeId?: bigint },
): Promise<{ entries: LedgerEntry[]; nextBeforeId: bigint | null }> {
  const cursorSeq =
    options.beforeId === undefined
      ? undefined
      : db
          .select({ seq: ledgerEntries.seq })
          .from(ledgerEntries)
          .where(and(eq(ledgerEntries.id, options.beforeId), eq(ledgerEntries.billingAccountId, billingAccountId)));
  const rows = await db
    .select()
    .from(ledgerEntries)
    .where(and(eq(ledgerEntries.billingAccountId, billingAccountId), cursorSeq === undefined ? undefined : lt(ledgerEntries.seq, cursorSeq)))
    .orderBy(desc(ledgerEntries.seq))
    .limit(options.limit + 1);
  const entries = rows.slice(0, options.limit);
  const hasMore = rows.length > options.limit;
  return { entries, nextBeforeId: hasMore ? entries[entries.length - 1]!.id : null };
}

export type Invoice = {
  period: string;
  openingBalance: bigint;
  creditsGranted: bigint;
  creditsUsed: bigint;
  receiptCount: number;
  creditsExpired: bigint;
  creditsDebited: bigint;
  creditsReversed: bigint;
  transfersIn: bigint;
  transfersOut: bigint;
  closingBalance: bigint;
  /** The month has been over for PERIOD_FINAL_AFTER_SECONDS: this invoice can no longer change. */
  final: boolean;
  finalAt: Date;
};

/**
 * Every ledger entry commits within 30 s of its posting time (the ledger_entries_commit_promptly
 * trigger, drizzle/0006), and posting times never run backwards per account, so once a month
 * has been over for a minute nothing dated inside it can still appear.
 */
export const PERIOD_FINAL_AFTER_SECONDS = 60;

/**
 * One UTC month, summed from ledger entries by posting time, one part per kind: opening +
 * granted + reversed + transfers in − used − expired − debited − transfers out = closing.
 * Final (by the database's clock) a minute after the month ends.
 */
export async function computeInvoice(db: Db, billingAccountId: string, period: string): Promise<Invoice> {
  const start = new Date(`${period}-01T00:00:00.000Z`);
  const end = new Date(start);
  end.setUTCMonth(end.getUTCMonth() + 1);
  const finalAt = new Date(end.getTime() + PERIOD_FINAL_AFTER_SECONDS * 1000);
  // The magnitude of one kind's entries in the month: inflows are positive, outflows negated.
  const part = (kind: LedgerKind) =>
    sql<string>`coalesce(abs(sum(${ledgerEntries.amountCredits}) filter (where ${ledgerEntries.kind} = ${kind} and ${ledgerEntries.createdAt} >= ${start})), 0)`;
  const [totals] = await db
    .select({
      opening: sql<string>`coalesce(sum(${ledgerEntries.amountCredits}) filter (where ${ledgerEntries.createdAt} < ${start}), 0)`,
      granted: part("grant"),
      used: part("charge"),
      receipts: sql<string>`count(*) filter (where ${ledgerEntries.kind} = 'charge' and ${ledgerEntries.createdAt} >= ${start})`,
      expired: part("expiry"),
      debited: part("debit"),
      reversed: part("reversal"),
      transfersIn: part("transfer_in"),
      transfersOut: part("transfer_out"),
      final: sql<boolean>`now() >= ${finalAt}::timestamptz`,
    })
    .from(ledgerEntries)
    .where(and(eq(ledgerEntries.billingAccountId, billingAccountId), lt(ledgerEntries.createdAt, end)));
  const read = (value: string) => BigInt(value);
  const invoice = {
    openingBalance: read(totals!.opening),
    creditsGranted: read(totals!.granted),
    creditsUsed: read(totals!.used),
    creditsExpired: read(totals!.expired),
    creditsDebited: read(totals!.debited),
    creditsReversed: read(totals!.reversed),
    transfersIn: read(totals!.transfersIn),
    transfersOut: read(totals!.transfersOut),
  };
  return {
    period,
    ...invoice,
    receiptCount: Number(totals!.receipts),
    closingBalance:
      invoice.openingBalance + invoice.creditsGranted + invoice.creditsReversed + invoice.transfersIn -
      invoice.creditsUsed - invoice.creditsExpired - invoice.creditsDebited - invoice.transfersOut,
    final: totals!.final,
    finalAt,
  };
}

/** A live bucket as the summary lists it. */
export type LiveBucket = { reference: string; source: BucketSource; remainingCredits: bigint; expiresAt: Date | null; priority: number };

/** At most this many live buckets in a summary: the next ones to be spent. */
export const SUMMARY_BUCKETS = 100;

// BUCKET_REFERENCE reads alias `b`.
const b = alias(creditBuckets, "b");
const liveBucketColumns = {
  reference: sql<string>`${sql.raw(BUCKET_REFERENCE)}`,
  source: b.source,
  remainingCredits: b.remainingCredits,
  expiresAt: b.expiresAt,
  priority: b.priority,
};

/** The account's live buckets in consumption order (the next to be spent first), at most `limit`. */
export async function listLiveBuckets(db: Db, billingAccountId: string, limit = SUMMARY_BUCKETS): Promise<LiveBucket[]> {
  return db
    .select(liveBucketColumns)
    .from(b)
    .where(and(eq(b.billingAccountId, billingAccountId), b.live))
    .orderBy(asc(b.priority), sql`${b.expiresAt} asc nulls last`, asc(b.createdAt), asc(b.id))
    .limit(limit);
}

/** The live bucket that expires soonest, if any does. */
export async function nextExpiry(db: Db, billingAccountId: string): Promise<LiveBucket | null> {
  const [row] = await db
    .select(liveBucketColumns)
    .from(b)
    .where(and(eq(b.billingAccountId, billingAccountId), b.live, isNotNull(b.expiresAt)))
    .orderBy(asc(b.expiresAt), asc(b.id))
    .limit(1);
  return row ?? null;
}

/** A receipt with the balance its ledger entry left and what its reversals gave back. */
export async function findReceipt(db: Db, idempotencyKey: string): Promise<ChargeReceipt | null> {
  const [row] = await db
    .select({
      receipt: chargeReceipts,
      priceBookHash: priceBooks.hash,
      balanceAfter: ledgerEntries.balanceAfter,
      reversed: sql<string>`(SELECT coalesce(sum(${reversals.credits}), 0)::text FROM ${reversals} WHERE ${reversals.receiptId} = ${chargeReceipts.id})`,
    })
    .from(chargeReceipts)
    .innerJoin(priceBooks, eq(priceBooks.id, chargeReceipts.priceBookId))
    .leftJoin(ledgerEntries, eq(ledgerEntries.receiptId, chargeReceipts.id))
    .where(eq(chargeReceipts.idempotencyKey, idempotencyKey));
  return row ? { ...row.receipt, priceBookHash: row.priceBookHash, balanceAfter: row.balanceAfter, reversedCredits: BigInt(row.reversed) } : null;
}
