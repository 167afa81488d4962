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
  /** Posting time in whole milliseconds (the service posts at millisecond precision). */
  postedAt: Date;
};

/**
 * A ledger entry's hash over the previous entry's hash and its own content, exactly as the
 * SQL function `ledger_entry_hash` (drizzle/0006) computes it, which reconcile checks with:
 * fields joined by '|', each text prefixed by its length in UTF-8 bytes (so no two contents
 * share a preimage), the posting time in epoch microseconds.
 */
export function ledgerEntryHash(previousHash: string, entry: ChainedContent): string {
  const content = `${previousHash}|${lengthPrefixed(entry.billingAccountId)}|${entry.seq}|${entry.kind}|${entry.amountCredits}|${entry.balanceBefore}|${entry.balanceAfter}|${lengthPrefixed(entry.reference)}|${entry.receiptId ?? ""}|${entry.grantId ?? ""}|${entry.postedAt.getTime()}000`;
  return createHash("sha256").update(content).digest("hex");
}

function lengthPrefixed(text: string): string {
  return `${Buffer.byteLength(text, "utf8")}:${text}`;
}
