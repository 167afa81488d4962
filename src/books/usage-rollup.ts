import type pg from "pg";
import { withTransaction } from "../platform/db/client.js";

// Raw SQL: one statement aggregates the receipts since the last run (or an account's) into
// usage_hourly, and the same SELECT is what reconcile compares usage_hourly with: one definition.

const USAGE_COLUMNS = [
  "calls",
  "free_calls",
  "priced_calls",
  "reported_calls",
  "input_tokens",
  "cached_tokens",
  "cache_write_tokens",
  "output_tokens",
  "reasoning_tokens",
  "charged_credits",
  "priced_credits",
  "reported_credits",
] as const;
export type UsageColumn = (typeof USAGE_COLUMNS)[number];

const USAGE_KEY = ["billing_account_id", "hour", "model", "key_hash", "team_id"] as const;

/**
 * The usage rows of the receipts `where` selects (over `charge_receipts r` and `alsoFrom`), by UTC hour of the
 * call (else of its charge), canonical model, key and team; '' where a receipt has none. The hour
 * is cut in UTC whatever the session's time zone.
 */
function usageOfReceipts(where: string, alsoFrom?: string): string {
  return `SELECT r.billing_account_id, date_trunc('hour', coalesce(r.event_time, r.created_at), 'UTC') AS hour,
            coalesce(r.canonical_model, r.model, '') AS model, coalesce(r.key_hash, '') AS key_hash, coalesce(r.team_id, '') AS team_id,
            count(*) AS calls,
            count(*) FILTER (WHERE r.pricing_source IN ('free', 'cache_hit')) AS free_calls,
            count(*) FILTER (WHERE r.pricing_source = 'price_book') AS priced_calls,
            count(*) FILTER (WHERE r.pricing_source = 'reported_cost') AS reported_calls,
            sum(r.prompt_tokens) AS input_tokens, sum(r.cache_read_tokens) AS cached_tokens,
            sum(r.cache_write_tokens) AS cache_write_tokens, sum(r.completion_tokens) AS output_tokens,
            sum(r.reasoning_tokens) AS reasoning_tokens, sum(r.charged_credits) AS charged_credits,
            coalesce(sum(r.charged_credits) FILTER (WHERE r.pricing_source = 'price_book'), 0) AS priced_credits,
            coalesce(sum(r.charged_credits) FILTER (WHERE r.pricing_source = 'reported_cost'), 0) AS reported_credits
     FROM charge_receipts r${alsoFrom === undefined ? "" : `, ${alsoFrom}`} WHERE ${where}
     GROUP BY 1, 2, 3, 4, 5`;
}

const INSERT_USAGE = `INSERT INTO usage_hourly AS u (${[...USAGE_KEY, ...USAGE_COLUMNS].join(", ")})`;

// The receipts usage_hourly holds: those from before the rollup (xact NULL, summed by migration
// 0015) and those of transactions below the watermark. Over `charge_receipts r` and a
// watermark row `w`.
const ROLLED_UP = "(r.xact IS NULL OR r.xact < w.xact)";

// An account's receipts, reached through its charge entries (alias `l`; each receipt has exactly
// one, which reconcile checks): receipts keep no index by account. Completed by `= <accounts>`.
const RECEIPTS_OF_ACCOUNTS = "l.kind = 'charge' AND r.id = l.receipt_id AND l.billing_account_id";

export type UsageRollup = { ran: boolean; rows: number; rolledUpAt: Date };

/**
 * Adds to usage_hourly the receipts of every transaction that finished since the last run: from
 * the watermark up to the oldest transaction still running (the snapshot's xmin; everything
 * below it has committed or rolled back, so none can add a receipt there later). Ids of
 * receipts are no watermark: a bigserial is taken at insert and commits out of order. The rows and
 * the new watermark commit together, under the watermark row's lock: exactly once across workers.
 * A worker that finds the row locked skips its turn (another is rolling up).
 */
export async function rollUpUsage(pool: pg.Pool): Promise<UsageRollup> {
  return withTransaction(pool, async (client) => {
    const { rows: locked } = await client.query<{ xact: string; rolled_up_at: Date }>(
      "SELECT xact::text, rolled_up_at FROM usage_rollup_watermark FOR UPDATE SKIP LOCKED",
    );
    if (locked.length === 0) {
      const { rows } = await client.query<{ rolled_up_at: Date }>("SELECT rolled_up_at FROM usage_rollup_watermark");
      return { ran: false, rows: 0, rolledUpAt: rows[0]!.rolled_up_at };
    }
    // After the lock: a later run starts where this one ends.
    const { rows: snapshot } = await client.query<{ upto: string; now: Date }>(
      "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS upto, clock_timestamp() AS now",
    );
    const { upto, now } = snapshot[0]!;
    const added = await client.query(
      `${INSERT_USAGE}
       ${usageOfReceipts("r.xact >= $1::xid8 AND r.xact < $2::xid8")}
       ON CONFLICT (${USAGE_KEY.join(", ")}) DO UPDATE SET ${USAGE_COLUMNS.map((column) => `${column} = u.${column} + EXCLUDED.${column}`).join(", ")}`,
      [locked[0]!.xact, upto],
    );
    await client.query("UPDATE usage_rollup_watermark SET xact = $1::xid8, rolled_up_at = $2", [upto, now]);
    return { ran: true, rows: added.rowCount ?? 0, rolledUpAt: now };
  });
}

const ACCOUNTS_PER_PAGE = 500;

export type UsageRebuild = { accounts: number; rows: number; strayRows: number };

/**
 * Rebuilds usage_hourly from the receipts, one account per transaction while workers charge and
 * roll up: each holds the watermark row's lock (a rollup run waits, or skips its turn), drops the
 * account's rows and sums its receipts below the watermark again, so a receipt is counted by the
 * rebuild or by a later run, never both. Rows of an account that does not exist are dropped.
 * Memory stays bounded: the work is in SQL.
 */
export async function rebuildUsage(pool: pg.Pool, options: { onProgress?: (accounts: number) => void } = {}): Promise<UsageRebuild> {
  const done: UsageRebuild = { accounts: 0, rows: 0, strayRows: 0 };
  let after = "";
  for (;;) {
    const { rows: page } = await pool.query<{ id: string }>("SELECT id FROM accounts WHERE id > $1 ORDER BY id LIMIT $2", [after, ACCOUNTS_PER_PAGE]);
    if (page.length === 0) break;
    for (const { id } of page) {
      done.rows += await withTransaction(pool, async (client) => {
        await client.query("SELECT 1 FROM usage_rollup_watermark FOR UPDATE");
        await client.query("DELETE FROM usage_hourly WHERE billing_account_id = $1", [id]);
        const where = `${RECEIPTS_OF_ACCOUNTS} = $1 AND ${ROLLED_UP}`;
        return (await client.query(`${INSERT_USAGE} ${usageOfReceipts(where, "usage_rollup_watermark w, ledger_entries l")}`, [id])).rowCount ?? 0;
      });
      done.accounts += 1;
    }
    after = page[page.length - 1]!.id;
    options.onProgress?.(done.accounts);
  }
  done.strayRows =
    (await pool.query("DELETE FROM usage_hourly u WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = u.billing_account_id)")).rowCount ?? 0;
  return done;
}

export type UsageMismatch = {
  billingAccountId: string;
  hour: string;
  model: string;
  keyHash: string;
  teamId: string;
  /** missing: receipts with no row; unbacked: a row no receipt stands for; differs: see fields. */
  problem: "missing" | "unbacked" | "differs";
  fields: UsageColumn[];
};

/** At most this many mismatches are reported per page of accounts: an empty usage_hourly would otherwise list every hour of every account. */
export const USAGE_MISMATCHES_SHOWN = 1000;

/**
 * The usage_hourly rows of these accounts that are not the aggregate of their receipts below the
 * watermark, found in one statement: one snapshot, in which a rollup's rows and its watermark are
 * both there or both not, so a reconcile run beside the workers sees no false mismatch.
 */
export async function usageMismatches(pool: pg.Pool, accountIds: readonly string[]): Promise<UsageMismatch[]> {
  const values = (side: string) => USAGE_COLUMNS.map((column) => `${side}.${column}::text AS ${side}_${column}`).join(", ");
  const { rows } = await pool.query<Record<string, string | null> & { hour: Date }>(
    `WITH expected AS (${usageOfReceipts(`${RECEIPTS_OF_ACCOUNTS} = ANY($1::text[]) AND ${ROLLED_UP}`, "usage_rollup_watermark w, ledger_entries l")}),
          stored AS (SELECT * FROM usage_hourly WHERE billing_account_id = ANY($1::text[]))
     SELECT ${USAGE_KEY.map((column) => `coalesce(e.${column}, s.${column}) AS ${column}`).join(", ")},
            e.calls IS NOT NULL AS expected_row, s.calls IS NOT NULL AS stored_row, ${values("e")}, ${values("s")}
     FROM expected e FULL JOIN stored s USING (${USAGE_KEY.join(", ")})
     WHERE (${USAGE_COLUMNS.map((column) => `e.${column}`).join(", ")}) IS DISTINCT FROM (${USAGE_COLUMNS.map((column) => `s.${column}`).join(", ")})
     ORDER BY 1, 2, 3, 4, 5 LIMIT $2`,
    [accountIds, USAGE_MISMATCHES_SHOWN],
  );
  return rows.map((row) => ({
    billingAccountId: row.billing_account_id!,
    hour: row.hour.toISOString(),
    model: row.model!,
    keyHash: row.key_hash!,
    teamId: row.team_id!,
    problem: !row.stored_row ? "missing" : !row.expected_row ? "unbacked" : "differs",
    fields: USAGE_COLUMNS.filter((column) => row[`e_${column}`] !== row[`s_${column}`]),
  }));
}

/** usage_hourly rows of accounts that do not exist, which the pages of accounts cannot see. */
export async function usageWithoutAccount(pool: pg.Pool): Promise<UsageMismatch[]> {
  const { rows } = await pool.query<{ billing_account_id: string; hour: Date; model: string; key_hash: string; team_id: string }>(
    `SELECT ${USAGE_KEY.join(", ")} FROM usage_hourly u
     WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = u.billing_account_id) ORDER BY 1, 2, 3, 4, 5 LIMIT $1`,
    [USAGE_MISMATCHES_SHOWN],
  );
  return rows.map((row) => ({
    billingAccountId: row.billing_account_id,
    hour: row.hour.toISOString(),
    model: row.model,
    keyHash: row.key_hash,
    teamId: row.team_id,
    problem: "unbacked",
    fields: [...USAGE_COLUMNS],
  }));
}
