import type pg from "pg";
import { withTransaction } from "../platform/db/client.js";

// Raw SQL: one statement aggregates a whole batch's receipts (or an account's) into usage_hourly,
// and the same SELECT is what reconcile compares usage_hourly with, so there is one definition.

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
 * The usage rows of the receipts `where` selects (over `charge_receipts r`), by UTC hour of the
 * call (else of its charge), canonical model, key and team; '' where a receipt has none. The hour
 * is cut in UTC whatever the session's time zone.
 */
function usageOfReceipts(where: string): string {
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
     FROM charge_receipts r WHERE ${where}
     GROUP BY 1, 2, 3, 4, 5`;
}

const INSERT_USAGE = `INSERT INTO usage_hourly AS u (${[...USAGE_KEY, ...USAGE_COLUMNS].join(", ")})`;

/**
 * Adds the usage of these receipts to usage_hourly, in the transaction that posted them: one
 * statement per batch. Every row it writes is of an account whose row lock the transaction
 * holds (postEntries), so it waits on no one the charge would not wait on anyway, and two
 * batches never write the same row at once.
 */
export async function addReceiptUsage(client: pg.PoolClient, receiptIds: readonly string[]): Promise<void> {
  if (receiptIds.length === 0) return;
  await client.query(
    `${INSERT_USAGE}
     ${usageOfReceipts("r.id = ANY($1::int8[])")}
     ON CONFLICT (${USAGE_KEY.join(", ")}) DO UPDATE SET ${USAGE_COLUMNS.map((column) => `${column} = u.${column} + EXCLUDED.${column}`).join(", ")}`,
    [receiptIds],
  );
}

const ACCOUNTS_PER_PAGE = 500;

export type UsageRebuild = { accounts: number; rows: number; strayRows: number };

/**
 * Rebuilds usage_hourly from the receipts, one account per transaction while workers charge:
 * each takes the account's row lock first (the lock every charge of the account holds while it
 * writes its receipts' usage), so no charge commits between the account's rows being dropped and
 * recomputed, and one committed before is in the recomputed rows. Rows of an account that does
 * not exist (which no charge writes) are dropped. Memory stays bounded: the work is in SQL.
 */
export async function rebuildUsage(pool: pg.Pool, options: { onProgress?: (accounts: number) => void } = {}): Promise<UsageRebuild> {
  const done: UsageRebuild = { accounts: 0, rows: 0, strayRows: 0 };
  let after = "";
  for (;;) {
    const { rows: page } = await pool.query<{ id: string }>("SELECT id FROM accounts WHERE id > $1 ORDER BY id LIMIT $2", [after, ACCOUNTS_PER_PAGE]);
    if (page.length === 0) break;
    for (const { id } of page) {
      done.rows += await withTransaction(pool, async (client) => {
        await client.query("SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE", [id]);
        await client.query("DELETE FROM usage_hourly WHERE billing_account_id = $1", [id]);
        return (await client.query(`${INSERT_USAGE} ${usageOfReceipts("r.billing_account_id = $1")}`, [id])).rowCount ?? 0;
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
 * The usage_hourly rows of these accounts that are not the aggregate of their receipts, found in
 * one statement: one snapshot, in which a charge's receipts and its usage are both there or both
 * not, so a reconcile run beside the workers sees no false mismatch.
 */
export async function usageMismatches(pool: pg.Pool, accountIds: readonly string[]): Promise<UsageMismatch[]> {
  const values = (side: string) => USAGE_COLUMNS.map((column) => `${side}.${column}::text AS ${side}_${column}`).join(", ");
  const { rows } = await pool.query<Record<string, string | null> & { hour: Date }>(
    `WITH expected AS (${usageOfReceipts("r.billing_account_id = ANY($1::text[])")}),
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
