import { createHash } from "node:crypto";
import { and, eq, gt } from "drizzle-orm";
import type pg from "pg";
import { drizzleOver } from "../platform/db/client.js";
import { accounts, ledgerEntries } from "../platform/db/schema.js";

/** Where an account's chain ends: its last entry's sequence number and hash. */
export type BookHead = { billingAccountId: string; seq: number; hash: string };

export type HeadDrift =
  | { kind: "head_entry_missing"; billingAccountId: string; seq: number }
  | { kind: "head_entry_changed"; billingAccountId: string; seq: number; entryId: string };

const ACCOUNTS_PER_PAGE = 5000;

/**
 * Every account with entries, in id order, with its head; an account whose last entry is gone
 * has none to give and is listed apart (reconcile says more), so the rest can still be kept.
 */
export async function readBookHeads(pool: pg.Pool): Promise<{ heads: BookHead[]; headless: string[] }> {
  const heads: BookHead[] = [];
  const headless: string[] = [];
  let after = "";
  const db = drizzleOver(pool);
  for (;;) {
    const rows = await db
      .select({ id: accounts.id, seq: accounts.ledgerSeq, hash: ledgerEntries.hash })
      .from(accounts)
      .leftJoin(ledgerEntries, and(eq(ledgerEntries.billingAccountId, accounts.id), eq(ledgerEntries.seq, accounts.ledgerSeq)))
      .where(and(gt(accounts.id, after), gt(accounts.ledgerSeq, 0n)))
      .orderBy(accounts.id)
      .limit(ACCOUNTS_PER_PAGE);
    if (rows.length === 0) return { heads, headless };
    for (const row of rows) {
      if (row.hash === null) headless.push(row.id);
      else heads.push({ billingAccountId: row.id, seq: Number(row.seq), hash: row.hash });
    }
    after = rows[rows.length - 1]!.id;
  }
}

/** One digest of all heads, to keep or compare where a whole list is too much. */
export function headsDigest(heads: readonly BookHead[]): string {
  const digest = createHash("sha256");
  for (const head of heads) {
    digest.update(`${Buffer.from(head.billingAccountId, "utf8").toString("hex")}|${head.seq}|${head.hash}\n`);
  }
  return digest.digest("hex");
}

/**
 * Heads taken earlier against the books now: each must still be the entry at its sequence
 * number with the same hash. As every hash covers the one before it, a match proves nothing
 * at or before that head was changed, however consistently the rows around it were rewritten.
 */
export async function verifyBookHeads(pool: pg.Pool, heads: readonly BookHead[]): Promise<HeadDrift[]> {
  const drifts: HeadDrift[] = [];
  for (let start = 0; start < heads.length; start += ACCOUNTS_PER_PAGE) {
    const page = heads.slice(start, start + ACCOUNTS_PER_PAGE);
    // Raw SQL: a page of heads checked in one statement through unnest.
    const { rows } = await pool.query<{ account: string; seq: string; entry_id: string | null }>(
      `SELECT h.account, h.seq, l.id AS entry_id
       FROM unnest($1::text[], $2::int8[], $3::text[]) AS h(account, seq, hash)
       LEFT JOIN ledger_entries l ON l.billing_account_id = h.account AND l.seq = h.seq
       WHERE l.id IS NULL OR l.hash <> decode(h.hash, 'hex')`,
      [page.map((head) => head.billingAccountId), page.map((head) => head.seq), page.map((head) => head.hash)],
    );
    for (const row of rows) {
      drifts.push(
        row.entry_id === null
          ? { kind: "head_entry_missing", billingAccountId: row.account, seq: Number(row.seq) }
          : { kind: "head_entry_changed", billingAccountId: row.account, seq: Number(row.seq), entryId: row.entry_id },
      );
    }
  }
  return drifts;
}
