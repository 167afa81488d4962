import { and, desc, eq, lt, sql } from "drizzle-orm";
import type { Db } from "../db/client.js";
import { accounts, chargeReceipts, ledgerEntries } from "../db/schema.js";

export type LedgerEntry = typeof ledgerEntries.$inferSelect;
export type ChargeReceipt = typeof chargeReceipts.$inferSelect & { balanceAfter: bigint | null };

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

/** Newest first; `beforeId` continues from the previous page's last entry. */
export async function listLedgerEntries(
  db: Db,
  billingAccountId: string,
  options: { limit: number; beforeId?: bigint },
): Promise<{ entries: LedgerEntry[]; nextBeforeId: bigint | null }> {
  const rows = await db
    .select()
    .from(ledgerEntries)
    .where(
      and(
        eq(ledgerEntries.billingAccountId, billingAccountId),
        options.beforeId === undefined ? undefined : lt(ledgerEntries.id, options.beforeId),
      ),
    )
    .orderBy(desc(ledgerEntries.id))
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
  closingBalance: bigint;
};

/** One UTC month, summed from ledger entries by posting time: opening + granted − used = closing. */
export async function computeInvoice(db: Db, billingAccountId: string, period: string): Promise<Invoice> {
  const start = new Date(`${period}-01T00:00:00.000Z`);
  const end = new Date(start);
  end.setUTCMonth(end.getUTCMonth() + 1);
  const [totals] = await db
    .select({
      opening: sql<string>`coalesce(sum(${ledgerEntries.amountCredits}) filter (where ${ledgerEntries.createdAt} < ${start}), 0)`,
      granted: sql<string>`coalesce(sum(${ledgerEntries.amountCredits}) filter (where ${ledgerEntries.kind} = 'grant' and ${ledgerEntries.createdAt} >= ${start}), 0)`,
      used: sql<string>`coalesce(-sum(${ledgerEntries.amountCredits}) filter (where ${ledgerEntries.kind} = 'charge' and ${ledgerEntries.createdAt} >= ${start}), 0)`,
      receipts: sql<string>`count(*) filter (where ${ledgerEntries.kind} = 'charge' and ${ledgerEntries.createdAt} >= ${start})`,
    })
    .from(ledgerEntries)
    .where(and(eq(ledgerEntries.billingAccountId, billingAccountId), lt(ledgerEntries.createdAt, end)));
  const openingBalance = BigInt(totals!.opening);
  const creditsGranted = BigInt(totals!.granted);
  const creditsUsed = BigInt(totals!.used);
  return {
    period,
    openingBalance,
    creditsGranted,
    creditsUsed,
    receiptCount: Number(totals!.receipts),
    closingBalance: openingBalance + creditsGranted - creditsUsed,
  };
}

/** A receipt with the balance its ledger entry left. */
export async function findReceipt(db: Db, idempotencyKey: string): Promise<ChargeReceipt | null> {
  const [row] = await db
    .select({ receipt: chargeReceipts, balanceAfter: ledgerEntries.balanceAfter })
    .from(chargeReceipts)
    .leftJoin(ledgerEntries, eq(ledgerEntries.receiptId, chargeReceipts.id))
    .where(eq(chargeReceipts.idempotencyKey, idempotencyKey));
  return row ? { ...row.receipt, balanceAfter: row.balanceAfter } : null;
}
