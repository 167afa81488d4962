import type pg from "pg";
import { ledgerEntryHash, GENESIS_HASH, chainedContent, chainedEntriesQuery, type ChainedRow } from "./entry-hash.js";

/**
 * The console's reads that the account API has no equivalent of. Each is bounded: by a LIMIT on
 * an index range, or, where the only source is a scan (an account's balance is deliberately not
 * indexed: every charge updates it, and an index on it would end the heap-only updates of the
 * hottest table), by the size of the table it scans, as each says. Raw SQL: aggregates and
 * LATERAL joins that drizzle would only wrap.
 */

/** Rows of the newest alerts and enforcement actions read for "today": these tables have no index by time. */
export const RECENT_ROWS_READ = 10_000;
/** Quarantined items counted per reason at most; past it the console says "10,000+". */
export const QUARANTINE_COUNT_CAP = 10_000;
/** Ledger entries read back per account to find when its balance crossed below a line. */
export const CROSSING_ENTRIES_READ = 2_000;

const day = 86_400_000;
/** The start of `at`'s UTC day. */
export const utcDayStart = (at: Date) => new Date(Math.floor(at.getTime() / day) * day);

/**
 * Calls per minute by the call's time, over [from, to): an index-only range scan of
 * charge_receipts_event_time_idx, proportional to the receipts in the window.
 */
export async function eventsPerMinute(pool: pg.Pool, from: Date, to: Date): Promise<Array<{ minute: Date; events: number }>> {
  const { rows } = await pool.query<{ minute: Date; events: number }>(
    `SELECT date_trunc('minute', event_time) AS minute, count(*)::int AS events
       FROM charge_receipts WHERE event_time >= $1 AND event_time < $2
      GROUP BY 1 ORDER BY 1 LIMIT 1441`,
    [from, to],
  );
  return rows;
}

export type AccountBelow = {
  id: string;
  balance: bigint;
  /** When its balance last crossed below the line (0 for a negative balance, else `line`). */
  since: Date | null;
  /** Not found in the entries read: below since before this time (or, with every entry read, since its first). */
  before: Date | null;
};

/**
 * Accounts whose balance is below `line`, lowest first, at most `limit`. A scan of accounts (see
 * above), then for each the newest CROSSING_ENTRIES_READ ledger entries by the (account, seq) index.
 */
export async function accountsBelow(pool: pg.Pool, line: bigint, limit: number): Promise<AccountBelow[]> {
  const { rows } = await pool.query<{ id: string; balance: string; since: Date | null; oldest_read: Date | null }>(
    `WITH below AS (
       SELECT id, balance_credits FROM accounts WHERE balance_credits < $1 ORDER BY balance_credits, id LIMIT $2)
     SELECT b.id, b.balance_credits::text AS balance, c.since, c.oldest_read
       FROM below b
       CROSS JOIN LATERAL (
         SELECT (array_agg(created_at ORDER BY seq DESC) FILTER (WHERE balance_before >= crossing_line AND balance_after < crossing_line))[1] AS since,
                min(created_at) AS oldest_read
           FROM (SELECT seq, created_at, balance_before, balance_after, CASE WHEN b.balance_credits < 0 THEN 0 ELSE $1 END AS crossing_line
                   FROM ledger_entries l WHERE l.billing_account_id = b.id ORDER BY seq DESC LIMIT $3) recent) c
      ORDER BY b.balance_credits, b.id`,
    [line.toString(), limit, CROSSING_ENTRIES_READ],
  );
  return rows.map((row) => ({ id: row.id, balance: BigInt(row.balance), since: row.since, before: row.since === null ? row.oldest_read : null }));
}

/** Pending (not replayed) items per reason, each counted up to QUARANTINE_COUNT_CAP + 1 through quarantine_reason_idx. */
export async function pendingQuarantineByReason(pool: pg.Pool, reasons: readonly string[]): Promise<Array<{ reason: string; pending: number }>> {
  const { rows } = await pool.query<{ reason: string; pending: number }>(
    `SELECT r.reason, c.pending FROM unnest($1::text[]) AS r(reason)
       CROSS JOIN LATERAL (SELECT count(*)::int AS pending FROM
         (SELECT 1 FROM quarantine q WHERE q.reason = r.reason AND q.replayed_at IS NULL LIMIT $2) capped) c
      WHERE c.pending > 0 ORDER BY c.pending DESC, r.reason`,
    [reasons, QUARANTINE_COUNT_CAP + 1],
  );
  return rows;
}

export type RecentDivergence = { idempotencyKey: string | null; billingAccountId: string | null; model: string | null; chargedCredits: number | null; reportedCredits: number; gatewayCredits: number; at: Date };

/**
 * `inv_price_divergence` alerts since `since`, among the newest RECENT_ROWS_READ alerts (whole
 * outbox rows, newest first, read until that many alerts); the newest `limit` listed.
 */
export async function recentDivergences(pool: pg.Pool, since: Date, limit: number): Promise<{ count: number; capped: boolean; newest: RecentDivergence[] }> {
  // Each outbox row holds at least one alert, so the newest RECENT_ROWS_READ rows hold enough;
  // the alerts' LIMIT ends the read there, not after every row's array is unpacked.
  const { rows } = await pool.query<{ total: number; read: number; fields: Record<string, unknown> | null; created_at: Date | null }>(
    `WITH recent AS (SELECT o.id, a.n, a.alert, o.created_at
                       FROM (SELECT id, alerts, created_at FROM alert_outbox ORDER BY id DESC LIMIT $2) o
                       CROSS JOIN LATERAL jsonb_array_elements(o.alerts) WITH ORDINALITY a(alert, n)
                      LIMIT $2),
          today AS (SELECT * FROM recent WHERE alert->>'event' = 'inv_price_divergence' AND created_at >= $1)
     SELECT (SELECT count(*)::int FROM today) AS total, (SELECT count(*)::int FROM recent) AS read, t.alert->'fields' AS fields, t.created_at
       FROM (SELECT 1) one
       LEFT JOIN LATERAL (SELECT * FROM today ORDER BY id DESC, n DESC LIMIT $3) t ON true
      ORDER BY t.id DESC, t.n DESC`,
    [since, RECENT_ROWS_READ, limit],
  );
  const first = rows[0]!;
  return {
    count: first.total,
    capped: first.read >= RECENT_ROWS_READ,
    newest: rows
      .filter((row) => row.fields !== null)
      .map((row) => {
        const fields = row.fields!;
        return {
          idempotencyKey: (fields.idempotency_key as string | null) ?? null,
          billingAccountId: (fields.billing_account_id as string | null) ?? null,
          model: (fields.model as string | null) ?? null,
          chargedCredits: (fields.charged_credits as number | null) ?? null,
          reportedCredits: fields.reported_credits as number,
          gatewayCredits: fields.gateway_credits as number,
          at: row.created_at!,
        };
      }),
  };
}

export type EnforcementSummary = {
  blockedAccounts: Array<{ billingAccountId: string; since: Date }>;
  blockedCount: number;
  blocksToday: number;
  blocksTodayCapped: boolean;
};

/**
 * Accounts blocked now (enforcement_accounts holds one row per account enforcement ever decided
 * on, scanned), and blocks decided since `since` among the newest RECENT_ROWS_READ actions.
 */
export async function enforcementSummary(pool: pg.Pool, since: Date, limit: number): Promise<EnforcementSummary> {
  const blocked = await pool.query<{ billing_account_id: string; changed_at: Date; total: number }>(
    `SELECT billing_account_id, changed_at, count(*) OVER ()::int AS total FROM enforcement_accounts
      WHERE state = 'blocked' ORDER BY changed_at DESC, billing_account_id LIMIT $1`,
    [limit],
  );
  const { rows } = await pool.query<{ blocks: number; read: number }>(
    `SELECT count(*) FILTER (WHERE action = 'block' AND created_at >= $1)::int AS blocks, count(*)::int AS read
       FROM (SELECT action, created_at FROM enforcement_actions ORDER BY id DESC LIMIT $2) recent`,
    [since, RECENT_ROWS_READ],
  );
  return {
    blockedAccounts: blocked.rows.map((row) => ({ billingAccountId: row.billing_account_id, since: row.changed_at })),
    blockedCount: blocked.rows[0]?.total ?? 0,
    blocksToday: rows[0]!.blocks,
    blocksTodayCapped: rows[0]!.read >= RECENT_ROWS_READ,
  };
}

/** How far each gateway backfill watermark is behind now. */
export async function backfillLag(pool: pg.Pool): Promise<Array<{ name: string; watermark: Date; lagSeconds: number }>> {
  const { rows } = await pool.query<{ name: string; watermark: Date; lag_seconds: number }>(
    `SELECT name, watermark, extract(epoch FROM now() - watermark)::float8 AS lag_seconds FROM gateway_watermarks ORDER BY name LIMIT 20`,
  );
  return rows.map((row) => ({ name: row.name, watermark: row.watermark, lagSeconds: row.lag_seconds }));
}

export type AccountSort = "id" | "balance" | "last_used";
export type AccountRow = { id: string; balance: bigint; lastUsedHour: Date | null };
/** Where the next page starts: the last row's sort key and id. */
export type AccountCursor = { key: string; id: string };

/** How far back "last use" looks (usage_hourly by hour): accounts unused for longer are not listed by last use. */
export const LAST_USE_WINDOW_DAYS = 30;

/**
 * A page of accounts. By id: the primary key, and a search is an id prefix (a range of that
 * index). By balance: a scan of accounts with a top-N sort (no index on the balance, above). By
 * last use: usage_hourly's hours of the last LAST_USE_WINDOW_DAYS, by usage_hourly_hour_idx.
 * Each row's last use is one probe of usage_hourly's primary key.
 */
export async function listAccounts(
  pool: pg.Pool,
  options: { sort: AccountSort; search?: string; after?: AccountCursor; limit: number },
): Promise<{ rows: AccountRow[]; next: AccountCursor | null }> {
  const search = options.search ?? "";
  const params: unknown[] = [search, options.limit + 1];
  // An id prefix as a range of the primary key (ids of the database's C collation sort by code point).
  const prefix = `($1 = '' OR (a.id >= $1 AND a.id < $1 || chr(1114111) AND starts_with(a.id, $1)))`;
  const lastUse = `(SELECT u.hour FROM usage_hourly u WHERE u.billing_account_id = a.id ORDER BY u.hour DESC LIMIT 1)`;
  let query: string;
  if (options.sort === "id") {
    if (options.after) params.push(options.after.id);
    query = `SELECT a.id, a.balance_credits::text AS balance, ${lastUse} AS last_used FROM accounts a
              WHERE ${prefix} ${options.after ? "AND a.id > $3" : ""} ORDER BY a.id LIMIT $2`;
  } else if (options.sort === "balance") {
    if (options.after) params.push(options.after.key, options.after.id);
    query = `SELECT a.id, a.balance_credits::text AS balance, ${lastUse} AS last_used FROM accounts a
              WHERE ${prefix} ${options.after ? "AND (a.balance_credits, a.id) > ($3::bigint, $4)" : ""}
              ORDER BY a.balance_credits, a.id LIMIT $2`;
  } else {
    params.push(new Date(Date.now() - LAST_USE_WINDOW_DAYS * day));
    if (options.after) params.push(new Date(options.after.key), options.after.id);
    query = `WITH used AS (SELECT billing_account_id AS id, max(hour) AS last_used FROM usage_hourly WHERE hour >= $3 GROUP BY 1)
             SELECT a.id, a.balance_credits::text AS balance, u.last_used FROM used u JOIN accounts a ON a.id = u.id
              WHERE ${prefix} ${options.after ? "AND (u.last_used < $4 OR (u.last_used = $4 AND a.id > $5))" : ""}
              ORDER BY u.last_used DESC, a.id LIMIT $2`;
  }
  const { rows } = await pool.query<{ id: string; balance: string; last_used: Date | null }>(query, params);
  const page = rows.slice(0, options.limit).map((row) => ({ id: row.id, balance: BigInt(row.balance), lastUsedHour: row.last_used }));
  const last = page[page.length - 1];
  const next =
    rows.length > options.limit && last
      ? { id: last.id, key: options.sort === "balance" ? last.balance.toString() : options.sort === "last_used" ? last.lastUsedHour!.toISOString() : last.id }
      : null;
  return { rows: page, next };
}

export type AccountHeader = { id: string; balance: bigint; entries: bigint; createdAt: Date; updatedAt: Date };

export async function findAccountHeader(pool: pg.Pool, id: string): Promise<AccountHeader | null> {
  const { rows } = await pool.query<{ id: string; balance: string; entries: string; created_at: Date; updated_at: Date }>(
    `SELECT id, balance_credits::text AS balance, ledger_seq::text AS entries, created_at, updated_at FROM accounts WHERE id = $1`,
    [id],
  );
  const row = rows[0];
  return row ? { id: row.id, balance: BigInt(row.balance), entries: BigInt(row.entries), createdAt: row.created_at, updatedAt: row.updated_at } : null;
}

/** The idempotency keys of charge receipts by id, for linking ledger entries to their receipt pages. */
export async function receiptKeys(pool: pg.Pool, receiptIds: readonly bigint[]): Promise<Map<string, string>> {
  if (receiptIds.length === 0) return new Map();
  const { rows } = await pool.query<{ id: string; idempotency_key: string }>(
    `SELECT id::text, idempotency_key FROM charge_receipts WHERE id = ANY($1::bigint[])`,
    [receiptIds.map(String)],
  );
  return new Map(rows.map((row) => [row.id, row.idempotency_key]));
}

export type ChainPlace = {
  seq: bigint;
  /** The account's entries in all. */
  of: bigint;
  hash: string;
  previousHash: string;
  nextHash: string | null;
  /** The entry's stored hash is what its content and the previous hash give. */
  verified: boolean;
};

/** A receipt's ledger entry in its account's chain: its neighbours' hashes, and whether its own hash recomputes. */
export async function receiptChainPlace(pool: pg.Pool, receiptId: bigint): Promise<ChainPlace | null> {
  const entry = await pool.query<{ billing_account_id: string; seq: string; of: string }>(
    `SELECT l.billing_account_id, l.seq::text, a.ledger_seq::text AS of
       FROM ledger_entries l JOIN accounts a ON a.id = l.billing_account_id WHERE l.receipt_id = $1`,
    [receiptId.toString()],
  );
  const found = entry.rows[0];
  if (!found) return null;
  const seq = BigInt(found.seq);
  const { rows } = await pool.query<ChainedRow>(chainedEntriesQuery("l.billing_account_id = $1 AND l.seq BETWEEN $2 AND $3", "ORDER BY l.seq"), [
    found.billing_account_id,
    (seq - 1n).toString(),
    (seq + 1n).toString(),
  ]);
  const bySeq = new Map(rows.map((row) => [BigInt(row.seq), row]));
  const own = bySeq.get(seq)!;
  const previousHash = bySeq.get(seq - 1n)?.hash ?? GENESIS_HASH;
  return {
    seq,
    of: BigInt(found.of),
    hash: own.hash,
    previousHash,
    nextHash: bySeq.get(seq + 1n)?.hash ?? null,
    verified: ledgerEntryHash(previousHash, chainedContent(own)) === own.hash,
  };
}
