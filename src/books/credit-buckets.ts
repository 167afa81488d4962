import type pg from "pg";
import type { BucketSource } from "../platform/db/ledger-kinds.js";
import type { PostedEntry } from "./post-entries.js";

/** When a bucket's credits expire (null: never) and where it stands in the consumption order (0–100, lower first). */
export type BucketTerms = { priority: number; expiresAt: Date | null };

export const DEFAULT_PRIORITY = 50;
export const EVERGREEN: BucketTerms = { priority: DEFAULT_PRIORITY, expiresAt: null };

// A bound on how far ahead an expiry may lie: past it, a typo (a year 20260) rather than a term.
export const MAX_EXPIRY_YEARS = 100;

/** Why a bucket's expiry cannot be `expiresAt` (null when it can): it must lie ahead, within MAX_EXPIRY_YEARS. */
export function expiryProblem(expiresAt: Date, now = new Date()): string | null {
  if (Number.isNaN(expiresAt.getTime())) return "not a time";
  if (expiresAt.getTime() <= now.getTime()) return "must be in the future";
  if (expiresAt.getTime() > now.getTime() + MAX_EXPIRY_YEARS * 365.25 * 86_400_000) return `must be within ${MAX_EXPIRY_YEARS} years`;
  return null;
}

/**
 * A bucket's reference as its expiry entry, its alerts and the summary show it (alias `b`): the
 * reference of the grant, transfer or reversal it came from, so each traces to a request of the
 * caller's; `<source>:<bucket id>` for an opening bucket, which came from none.
 */
export const BUCKET_REFERENCE = `coalesce(
  CASE b.source WHEN 'grant' THEN (SELECT reference FROM grants WHERE id = b.source_id)
                WHEN 'transfer_in' THEN (SELECT reference FROM transfers WHERE id = b.source_id)
                WHEN 'reversal' THEN (SELECT reference FROM reversals WHERE id = b.source_id) END,
  b.source || ':' || b.id)`;

export type NewBucket = { source: BucketSource; sourceId: string | null; terms: BucketTerms };

/** What an outflow entry took from one bucket (the bucket's terms too: a transfer passes them on). */
export type Allocation = { ledgerEntryId: string; bucketId: string; credits: bigint; terms: BucketTerms };

/**
 * The part of a posted inflow that becomes live credit: what is left above zero once it has paid
 * the account's debt. Debt is settled first, so an expiry never takes back value that already paid
 * for usage, and the balance is always the live buckets less the debt.
 */
export function liveCreditsOf(inflow: Pick<PostedEntry, "amountCredits" | "balanceAfter">): bigint {
  const aboveZero = inflow.balanceAfter > 0n ? inflow.balanceAfter : 0n;
  return inflow.amountCredits < aboveZero ? inflow.amountCredits : aboveZero;
}

/**
 * The part of a posted outflow the live buckets cover. They hold exactly the balance before it
 * when that is positive (and nothing otherwise), so an outflow on an account in debt or at zero
 * needs no bucket read at all: the common unfunded charge stays as cheap as before buckets.
 */
export function coveredCreditsOf(outflow: Pick<PostedEntry, "amountCredits" | "balanceBefore">): bigint {
  const live = outflow.balanceBefore > 0n ? outflow.balanceBefore : 0n;
  const out = -outflow.amountCredits;
  return out < live ? out : live;
}

/** Opens the bucket an inflow's live part becomes, if any is left after its debt; returns its id. */
export async function openBucket(client: pg.PoolClient, inflow: PostedEntry, bucket: NewBucket): Promise<string | null> {
  const credits = liveCreditsOf(inflow);
  if (credits <= 0n) return null;
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO credit_buckets (billing_account_id, source, source_id, priority, expires_at, credits, remaining_credits, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING id`,
    [inflow.billingAccountId, bucket.source, bucket.sourceId, bucket.terms.priority, bucket.terms.expiresAt, credits.toString(), inflow.postedAt],
  );
  return rows[0]!.id;
}

/**
 * Draws posted outflows (in the caller's transaction, their accounts already locked) from their
 * accounts' live buckets in consumption order: lower priority first, then soonest expiry (never
 * expiring last), then oldest. One statement for the whole batch, whatever its size, and none when
 * no outflow has live credit to draw. Returns the allocations written, in each account's entry
 * order and, within an entry, consumption order.
 *
 * Per account, the outflows fill the buckets in order: laid end to end, the entries' covered
 * credits and the buckets' remaining credits are two runs of intervals from 0, and an entry takes
 * from a bucket what their intervals share. Buckets short of the balance (edited by hand) give
 * what they hold: the charge stands, and reconcile names the account (live_credit_mismatch)
 * rather than billing stopping on it. The buckets are not locked: every writer of a bucket's
 * credits holds its account's lock first, as this transaction does, and this statement's snapshot,
 * taken after those locks, sees their last writes.
 */
export async function drawBuckets(client: pg.PoolClient, outflows: readonly PostedEntry[]): Promise<Allocation[]> {
  const drawing = outflows.map((entry) => ({ entry, covered: coveredCreditsOf(entry) })).filter(({ covered }) => covered > 0n);
  if (drawing.length === 0) return [];
  const { rows } = await client.query<{ ledger_entry_id: string; bucket_id: string; credits: string; priority: number; expires_at: Date | null }>(
    `WITH drawing AS (
       SELECT entry_id, account, seq, sum(covered) OVER (PARTITION BY account ORDER BY seq) AS upto, covered
       FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[]) AS d(entry_id, account, seq, covered)),
     slots AS (
       SELECT id, billing_account_id, priority, expires_at, remaining_credits,
              sum(remaining_credits) OVER (PARTITION BY billing_account_id ORDER BY priority, expires_at, created_at, id) AS upto,
              row_number() OVER (PARTITION BY billing_account_id ORDER BY priority, expires_at, created_at, id) AS position
       FROM credit_buckets WHERE billing_account_id = ANY($2::text[]) AND live),
     shares AS (
       SELECT d.entry_id, d.seq, s.id AS bucket_id, s.position, s.priority, s.expires_at,
              least(d.upto, s.upto) - greatest(d.upto - d.covered, s.upto - s.remaining_credits) AS credits
       FROM drawing d JOIN slots s ON s.billing_account_id = d.account
        AND s.upto - s.remaining_credits < d.upto AND d.upto - d.covered < s.upto),
     allocated AS (
       INSERT INTO bucket_allocations (ledger_entry_id, bucket_id, credits) SELECT entry_id, bucket_id, credits FROM shares),
     moved AS (
       UPDATE credit_buckets b SET remaining_credits = b.remaining_credits - t.credits
       FROM (SELECT bucket_id, sum(credits) AS credits FROM shares GROUP BY bucket_id) t WHERE b.id = t.bucket_id)
     SELECT entry_id AS ledger_entry_id, bucket_id, credits, priority, expires_at FROM shares ORDER BY seq, position`,
    [
      drawing.map(({ entry }) => entry.id),
      drawing.map(({ entry }) => entry.billingAccountId),
      drawing.map(({ entry }) => entry.seq.toString()),
      drawing.map(({ covered }) => covered.toString()),
    ],
  );
  return rows.map((row) => ({
    ledgerEntryId: row.ledger_entry_id,
    bucketId: row.bucket_id,
    credits: BigInt(row.credits),
    terms: { priority: row.priority, expiresAt: row.expires_at },
  }));
}

/**
 * Writes allocations and moves their buckets by them, in one statement: a bucket's remaining
 * credits drop by what is allocated from it (a negative allocation, a return, raises them), so
 * they stay its credits less the sum of its allocations, the rule reconcile checks. One round trip
 * inside the accounts' locks, which a batch holds until it commits.
 */
export async function allocate(client: pg.PoolClient, allocations: ReadonlyArray<Omit<Allocation, "terms">>): Promise<void> {
  if (allocations.length === 0) return;
  await client.query(
    `WITH allocated AS (
       INSERT INTO bucket_allocations (ledger_entry_id, bucket_id, credits)
       SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[])
       RETURNING bucket_id, credits)
     UPDATE credit_buckets b SET remaining_credits = b.remaining_credits - a.credits
     FROM (SELECT bucket_id, sum(credits) AS credits FROM allocated GROUP BY bucket_id) a
     WHERE b.id = a.bucket_id`,
    [allocations.map((a) => a.ledgerEntryId), allocations.map((a) => a.bucketId), allocations.map((a) => a.credits.toString())],
  );
}

/** A share of an inflow and the terms its credits are to keep (a transfer's parts, as the source held them). */
export type InflowPart = { credits: bigint; terms: BucketTerms };

/**
 * Opens the buckets of an inflow made of parts (their credits sum to the inflow's amount). The
 * debt it pays is taken from the parts the destination would spend first (consumption order), so
 * what stays live is what would have lasted longest; the rest of each part becomes a bucket with
 * its terms, parts with the same terms as one. Returns the buckets' ids.
 */
export async function openBuckets(
  client: pg.PoolClient,
  inflow: PostedEntry,
  source: { source: BucketSource; sourceId: string },
  parts: readonly InflowPart[],
): Promise<string[]> {
  let debt = inflow.amountCredits - liveCreditsOf(inflow);
  const merged = new Map<string, InflowPart>();
  for (const part of [...parts].sort((a, b) => compareTerms(a.terms, b.terms))) {
    const paid = debt < part.credits ? debt : part.credits;
    debt -= paid;
    if (part.credits === paid) continue;
    const key = `${part.terms.priority}|${part.terms.expiresAt?.getTime() ?? "never"}`;
    const credits = (merged.get(key)?.credits ?? 0n) + part.credits - paid;
    merged.set(key, { credits, terms: part.terms });
  }
  return insertBuckets(client, inflow, source, [...merged.values()]);
}

/** Inserts live buckets for an inflow's parts, as they are (the caller has taken the debt out); returns their ids. */
export async function insertBuckets(
  client: pg.PoolClient,
  inflow: PostedEntry,
  source: { source: BucketSource; sourceId: string },
  parts: readonly InflowPart[],
): Promise<string[]> {
  const opened = parts.filter((part) => part.credits > 0n);
  if (opened.length === 0) return [];
  const { rows } = await client.query<{ id: string }>(
    `INSERT INTO credit_buckets (billing_account_id, source, source_id, priority, expires_at, credits, remaining_credits, created_at)
     SELECT $1, $2, $3, u.priority, u.expires_at, u.credits, u.credits, $4
     FROM unnest($5::int4[], $6::timestamptz[], $7::int8[]) AS u(priority, expires_at, credits) RETURNING id`,
    [
      inflow.billingAccountId,
      source.source,
      source.sourceId,
      inflow.postedAt,
      opened.map((part) => part.terms.priority),
      opened.map((part) => part.terms.expiresAt?.toISOString() ?? null),
      opened.map((part) => part.credits.toString()),
    ],
  );
  return rows.map((row) => row.id);
}

/** Consumption order of terms: lower priority first, then soonest expiry, never-expiring last. */
function compareTerms(a: BucketTerms, b: BucketTerms): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const aTime = a.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  const bTime = b.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  return aTime === bTime ? 0 : aTime < bTime ? -1 : 1;
}

/**
 * Gives credits back to buckets an outflow drew (in the caller's transaction, the account locked):
 * each bucket's remaining credits grow, and the inflow's allocation to it is negative, so a
 * bucket's remaining credits stay its credits less the sum of its allocations.
 */
export async function returnToBuckets(
  client: pg.PoolClient,
  inflow: PostedEntry,
  returns: ReadonlyArray<{ bucketId: string; credits: bigint }>,
): Promise<void> {
  await allocate(client, returns.map((r) => ({ ledgerEntryId: inflow.id, bucketId: r.bucketId, credits: -r.credits })));
}
