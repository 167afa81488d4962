import type pg from "pg";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import type { LedgerKind } from "../platform/db/ledger-kinds.js";
import { byteaHex, type ChainedContent, GENESIS_HASH, ledgerEntryHash, sourceDigest } from "./entry-hash.js";
import { numberArray, textArray } from "./sql-arrays.js";

/**
 * A balance change to post: a charge (negative, with its receipt), a grant (positive, with its
 * grant), or a later kind with its source row (`sourceId`).
 */
export type Posting = {
  billingAccountId: string;
  kind: LedgerKind;
  amountCredits: bigint;
  reference: string;
  receiptId: string | null;
  grantId: string | null;
  sourceId: string | null;
  /** The stored content of its source (RECEIPT_CONTENT, GRANT_CONTENT, …), which its hash covers. */
  sourceContent: string;
};

export type PostedEntry = ChainedContent & { id: string; postedAt: Date; hash: string };

/** An account as moved: its balance and sequence after, the hash of its last entry before, the posting time. */
type AccountHead = { balanceAfter: bigint; seqAfter: bigint; head: string; postedAt: Date };

// A batch whose accounts keep moving past the bound under it is retried as a whole job.
const MAX_ROUNDS = 3;

/**
 * Posts ledger entries in the caller's transaction, in the order given per account: each
 * account's row is locked (in id order, one statement), its balance moved and its sequence
 * advanced; the posting time is read under that lock, so it never runs behind an entry already
 * posted; the entries are chained onto the account's head. A posting that would take a
 * balance past ±MAX_CREDITS (and, for books from before the bound, not closer to zero) is not
 * posted but returned in `refused`, and the rest of its account's postings still are.
 */
export async function postEntries(
  client: pg.PoolClient,
  postings: Posting[],
): Promise<{ posted: PostedEntry[]; refused: Posting[] }> {
  const posted: PostedEntry[] = [];
  const refused: Posting[] = [];
  let pending = postings;
  for (let round = 1; pending.length > 0; round++) {
    if (round > MAX_ROUNDS) throw new Error("account balances kept moving past the credit bound while posting");
    const heads = await moveBalances(client, totalsByAccount(pending));
    const moved = pending.filter((posting) => heads.has(posting.billingAccountId));
    posted.push(...(await insertChained(client, moved, heads)));
    const blocked = pending.filter((posting) => !heads.has(posting.billingAccountId));
    if (blocked.length === 0) break;
    // Rare: some account would cross the bound. Its row is locked now (or does not exist yet):
    // keep, in order, the postings that fit from its current balance and post those next round.
    const balances = await lockedBalances(client, [...new Set(blocked.map((posting) => posting.billingAccountId))]);
    pending = [];
    for (const posting of blocked) {
      const before = balances.get(posting.billingAccountId) ?? 0n;
      const after = before + posting.amountCredits;
      // The rule moveBalances applies: within the bound, or (books from before it) closer to zero.
      if ((after < -MAX_CREDITS || after > MAX_CREDITS) && abs(after) >= abs(before)) {
        refused.push(posting);
        continue;
      }
      balances.set(posting.billingAccountId, after);
      pending.push(posting);
    }
  }
  return { posted, refused };
}

function totalsByAccount(postings: Posting[]): Map<string, { delta: bigint; entries: bigint }> {
  const totals = new Map<string, { delta: bigint; entries: bigint }>();
  for (const posting of postings) {
    const total = totals.get(posting.billingAccountId) ?? { delta: 0n, entries: 0n };
    total.delta += posting.amountCredits;
    total.entries += 1n;
    totals.set(posting.billingAccountId, total);
  }
  return totals;
}

/**
 * Adds each account's delta to its balance and its entry count to its sequence, creating an
 * unseen account at 0 first, in one statement that locks the rows in id order. An account
 * whose balance would leave the bound is locked but not moved, and is missing from the answer.
 */
async function moveBalances(
  client: pg.PoolClient,
  totals: ReadonlyMap<string, { delta: bigint; entries: bigint }>,
): Promise<Map<string, AccountHead>> {
  // A batch total past the bound cannot even be sent as an int8; those accounts go the slow way.
  const ids = [...totals]
    .filter(([, { delta }]) => delta >= -MAX_CREDITS && delta <= MAX_CREDITS)
    .map(([id]) => id)
    .sort(compareText);
  if (ids.length === 0) return new Map();
  const { rows } = await client.query<{ id: string; balance_credits: string; ledger_seq: string }>(
    `INSERT INTO accounts AS a (id, balance_credits, ledger_seq)
     SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])
     ON CONFLICT (id) DO UPDATE SET
       balance_credits = a.balance_credits + EXCLUDED.balance_credits,
       ledger_seq = a.ledger_seq + EXCLUDED.ledger_seq,
       updated_at = now()
     -- Within the bound, or (books from before the bound) closer to zero.
     WHERE a.balance_credits + EXCLUDED.balance_credits BETWEEN -$4::int8 AND $4::int8
        OR abs(a.balance_credits + EXCLUDED.balance_credits) < abs(a.balance_credits)
     RETURNING id, balance_credits, ledger_seq`,
    [ids, ids.map((id) => totals.get(id)!.delta.toString()), ids.map((id) => totals.get(id)!.entries.toString()), MAX_CREDITS.toString()],
  );
  const moved = rows.map((row) => ({ row, seqBefore: BigInt(row.ledger_seq) - totals.get(row.id)!.entries }));
  const lasts = await lastEntries(client, moved.map(({ row, seqBefore }) => [row.id, seqBefore]));
  return new Map(
    moved.map(({ row }) => {
      const last = lasts.get(row.id)!;
      return [row.id, { balanceAfter: BigInt(row.balance_credits), seqAfter: BigInt(row.ledger_seq), ...last }];
    }),
  );
}

/**
 * Each account's last entry's hash (genesis for a first entry, and for an account whose last
 * entry is gone: reconcile names it) and the posting time: the database's clock, never before
 * that last entry. A statement of its own, after the row locks: its snapshot sees every entry
 * committed before this transaction got the lock, where the locking statement's (taken before
 * any wait) would not; and the time is read after the wait.
 */
async function lastEntries(client: pg.PoolClient, lasts: Array<[string, bigint]>): Promise<Map<string, { head: string; postedAt: Date }>> {
  const { rows } = await client.query<{ id: string; hash: string | null; posted_ms: string }>(
    `SELECT h.id, encode(l.hash, 'hex') AS hash,
            greatest(ceil(extract(epoch FROM l.created_at) * 1000), floor(extract(epoch FROM clock_timestamp()) * 1000))::int8 AS posted_ms
     FROM unnest($1::text[], $2::int8[]) AS h(id, seq)
     -- One index probe per account, whatever the planner thinks of the table's size.
     LEFT JOIN LATERAL (SELECT hash, created_at FROM ledger_entries WHERE billing_account_id = h.id AND seq = h.seq) l ON true`,
    [lasts.map(([id]) => id), lasts.map(([, seq]) => seq.toString())],
  );
  return new Map(rows.map((row) => [row.id, { head: row.hash ?? GENESIS_HASH, postedAt: new Date(Number(row.posted_ms)) }]));
}

async function lockedBalances(client: pg.PoolClient, ids: string[]): Promise<Map<string, bigint>> {
  const { rows } = await client.query<{ id: string; balance_credits: string }>(
    "SELECT id, balance_credits FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
    [ids],
  );
  return new Map(rows.map((row) => [row.id, BigInt(row.balance_credits)]));
}

/** Numbers, balances and chains the moved postings from each account's last entry, and stores them. */
async function insertChained(client: pg.PoolClient, postings: Posting[], heads: Map<string, AccountHead>): Promise<PostedEntry[]> {
  if (postings.length === 0) return [];
  const cursors = new Map<string, { balance: bigint; seq: bigint; hash: string; postedAt: Date }>();
  for (const [id, { delta, entries }] of totalsByAccount(postings)) {
    const head = heads.get(id)!;
    cursors.set(id, { balance: head.balanceAfter - delta, seq: head.seqAfter - entries, hash: head.head, postedAt: head.postedAt });
  }
  const entries = postings.map((posting): PostedEntry => {
    const cursor = cursors.get(posting.billingAccountId)!;
    const entry: PostedEntry = {
      id: "",
      billingAccountId: posting.billingAccountId,
      kind: posting.kind,
      amountCredits: posting.amountCredits,
      reference: posting.reference,
      receiptId: posting.receiptId,
      grantId: posting.grantId,
      sourceId: posting.sourceId,
      sourceDigest: sourceDigest(posting.sourceContent),
      seq: cursor.seq + 1n,
      balanceBefore: cursor.balance,
      balanceAfter: cursor.balance + posting.amountCredits,
      postedAt: cursor.postedAt,
      postedAtMicros: BigInt(cursor.postedAt.getTime()) * 1000n,
      hash: "",
    };
    entry.hash = ledgerEntryHash(cursor.hash, entry);
    cursor.balance = entry.balanceAfter;
    cursor.seq = entry.seq;
    cursor.hash = entry.hash;
    return entry;
  });
  const column = <T>(read: (entry: PostedEntry) => T) => entries.map(read);
  const { rows } = await client.query<{ id: string; billing_account_id: string; seq: string }>(
    `INSERT INTO ledger_entries (billing_account_id, kind, amount_credits, balance_before, balance_after, reference,
                                 receipt_id, grant_id, seq, hash, created_at, source_id)
     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int8[], $8::int8[],
                          $9::int8[], $10::bytea[], $11::timestamptz[], $12::int8[])
     RETURNING id, billing_account_id, seq`,
    [
      textArray(column((entry) => entry.billingAccountId)),
      textArray(column((entry) => entry.kind)),
      numberArray(column((entry) => entry.amountCredits)),
      numberArray(column((entry) => entry.balanceBefore)),
      numberArray(column((entry) => entry.balanceAfter)),
      textArray(column((entry) => entry.reference)),
      textArray(column((entry) => entry.receiptId)),
      textArray(column((entry) => entry.grantId)),
      numberArray(column((entry) => entry.seq)),
      textArray(column((entry) => byteaHex(entry.hash))),
      textArray(column((entry) => entry.postedAt.toISOString())),
      textArray(column((entry) => entry.sourceId)),
    ],
  );
  // Matched by account and sequence: RETURNING promises no order.
  const ids = new Map(rows.map((row) => [`${row.seq}|${row.billing_account_id}`, row.id]));
  for (const entry of entries) entry.id = ids.get(`${entry.seq}|${entry.billingAccountId}`)!;
  return entries;
}

export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function abs(value: bigint): bigint {
  return value < 0n ? -value : value;
}
