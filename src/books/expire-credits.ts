import type pg from "pg";
import { withTransaction } from "../platform/db/client.js";
import type { Alert } from "./alert-catalog.js";
import { insertAlerts, type OutboxAlert } from "./alert-outbox.js";
import { balanceAlertsFor } from "./balance-alerts.js";
import { allocate, BUCKET_REFERENCE } from "./credit-buckets.js";
import { enforceAfterPosting, type EnforcementPolicy } from "./enforcement.js";
import { BUCKET_CONTENT } from "./entry-hash.js";
import { type Posting, postEntries } from "./post-entries.js";

export type ExpirySettings = {
  /** The sweep's clock; the database's when left out (tests pass one rather than wait). */
  now?: Date;
  /** Buckets per transaction: a sweep behind by many commits in bounded steps. */
  limit: number;
  /** How long before its expiry a bucket with credits left raises `credits_expiring`. */
  expiringWithinMs: number;
  lowBalanceThresholds: readonly bigint[];
  enforcement: EnforcementPolicy;
};

export type ExpiryPass = { expired: number; expiring: number; alerts: OutboxAlert[] };

const MAX_DATE_MS = 8.64e15;

// One sweeping transaction at a time across workers: the next waits (within lock_timeout) and
// then finds the work done, rather than lock the same accounts beside it. Exported for tests that
// hold the sweep back while they set up what it will find.
export const EXPIRY_LOCK = 0x5e_c0_e0_01;

/**
 * Expires up to `limit` buckets whose expires_at has passed, in one transaction: each account
 * locked (id order, as every posting does), then its buckets; one `expiry` entry of minus what
 * each has left, its remaining set to 0 and expired_at set, its allocation written, the balance
 * alerts and enforcement decided like any charge's, and `credits_expired` queued. A crash
 * anywhere rolls all of it back, and a bucket already expired is skipped under its lock (and the
 * unique index on an entry's kind and source refuses a second entry), so each expires exactly
 * once. Then raises `credits_expiring` once for buckets entering the warning window.
 */
export async function expireCredits(pool: pg.Pool, settings: ExpirySettings): Promise<ExpiryPass> {
  return withTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [EXPIRY_LOCK]);
    const now = settings.now ?? (await databaseNow(client));
    const alerts = await expireDue(client, now, settings);
    const expiring = await expiringAlerts(client, now, settings);
    return { expired: alerts.expired, expiring: expiring.length, alerts: await insertAlerts(client, [...alerts.alerts, ...expiring]) };
  });
}

type DueBucket = {
  id: string;
  billing_account_id: string;
  remaining_credits: string;
  expires_at: Date;
  reference: string;
  content: string;
};

async function expireDue(client: pg.PoolClient, now: Date, settings: ExpirySettings): Promise<{ expired: number; alerts: Alert[] }> {
  const { rows: due } = await client.query<{ billing_account_id: string }>(
    `SELECT DISTINCT billing_account_id FROM (
       SELECT billing_account_id FROM credit_buckets
       WHERE expires_at <= $1 AND live AND expired_at IS NULL ORDER BY expires_at, id LIMIT $2) d`,
    [now, settings.limit],
  );
  if (due.length === 0) return { expired: 0, alerts: [] };
  const accounts = due.map((row) => row.billing_account_id);
  await client.query("SELECT id FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", [accounts]);
  // Read again under the locks: a bucket another transaction drained or expired meanwhile is left.
  const { rows: buckets } = await client.query<DueBucket>(
    `SELECT b.id, b.billing_account_id, b.remaining_credits, b.expires_at, ${BUCKET_REFERENCE} AS reference, ${BUCKET_CONTENT} AS content
     FROM credit_buckets b
     WHERE b.billing_account_id = ANY($1::text[]) AND b.expires_at <= $2 AND b.live AND b.expired_at IS NULL
     ORDER BY b.billing_account_id, b.expires_at, b.id
     LIMIT $3
     FOR UPDATE OF b`,
    [accounts, now, settings.limit],
  );
  const { posted } = await postEntries(
    client,
    buckets.map((bucket): Posting => ({
      billingAccountId: bucket.billing_account_id,
      kind: "expiry",
      amountCredits: -BigInt(bucket.remaining_credits),
      reference: bucket.reference,
      receiptId: null,
      grantId: null,
      sourceId: bucket.id,
      sourceContent: bucket.content,
    })),
  );
  // An expiry moves a positive balance toward zero, which the bound never refuses.
  const entryOf = new Map(posted.map((entry) => [entry.sourceId!, entry]));
  const expired = buckets.filter((bucket) => entryOf.has(bucket.id));
  // Its allocation takes what is left; then it is marked, so nothing draws or expires it again.
  await allocate(
    client,
    expired.map((bucket) => ({ ledgerEntryId: entryOf.get(bucket.id)!.id, bucketId: bucket.id, credits: BigInt(bucket.remaining_credits) })),
  );
  await client.query(
    `UPDATE credit_buckets b SET expired_at = u.at FROM unnest($1::int8[], $2::timestamptz[]) AS u(id, at) WHERE b.id = u.id`,
    [expired.map((bucket) => bucket.id), expired.map((bucket) => entryOf.get(bucket.id)!.postedAt)],
  );
  await enforceAfterPosting(client, settings.enforcement, posted);
  const alerts = expired.flatMap((bucket): Alert[] => {
    const entry = entryOf.get(bucket.id)!;
    const cause = { entry_kind: "expiry", reference: bucket.reference, bucket_id: bucket.id, expired_credits: Number(bucket.remaining_credits) };
    return [
      {
        event: "credits_expired",
        fields: { billing_account_id: bucket.billing_account_id, ...cause, expires_at: bucket.expires_at.toISOString(), balance_after: Number(entry.balanceAfter) },
      },
      ...balanceAlertsFor({ billingAccountId: entry.billingAccountId, balanceBefore: entry.balanceBefore, balanceAfter: entry.balanceAfter, cause }, settings.lowBalanceThresholds),
    ];
  });
  return { expired: expired.length, alerts };
}

/**
 * Marks buckets with credits left whose expiry is now within the warning window, once each, and
 * answers their `credits_expiring` alerts. Buckets a charge holds are skipped (SKIP LOCKED) and
 * taken on the next pass, so this never waits behind, or deadlocks with, a posting.
 */
async function expiringAlerts(client: pg.PoolClient, now: Date, settings: ExpirySettings): Promise<Alert[]> {
  const { rows } = await client.query<{ id: string; billing_account_id: string; remaining_credits: string; expires_at: Date; reference: string }>(
    `WITH marked AS (
       UPDATE credit_buckets SET expiring_alerted_at = $1
       WHERE id IN (SELECT id FROM credit_buckets
                    WHERE expires_at > $1 AND expires_at <= $2 AND live AND expired_at IS NULL
                      AND expiring_alerted_at IS NULL
                    ORDER BY expires_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING id, billing_account_id, remaining_credits, expires_at, source, source_id)
     SELECT b.id, b.billing_account_id, b.remaining_credits, b.expires_at, ${BUCKET_REFERENCE} AS reference
     FROM marked b ORDER BY b.expires_at, b.id`,
    // A window past any expiry a grant may carry (100 years) is all of them: capped where a Date ends.
    [now, new Date(Math.min(now.getTime() + settings.expiringWithinMs, MAX_DATE_MS)), settings.limit],
  );
  return rows.map((row) => ({
    event: "credits_expiring",
    fields: {
      billing_account_id: row.billing_account_id,
      reference: row.reference,
      bucket_id: row.id,
      remaining_credits: Number(row.remaining_credits),
      expires_at: row.expires_at.toISOString(),
    },
  }));
}

async function databaseNow(client: pg.PoolClient): Promise<Date> {
  const { rows } = await client.query<{ now: Date }>("SELECT clock_timestamp() AS now");
  return rows[0]!.now;
}
