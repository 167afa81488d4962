import type pg from "pg";
import { expect } from "vitest";

/**
 * The aggregate of the receipts, written here independently of the code under test (the hour
 * as the UTC wall clock), and usage_hourly, each as sorted text rows.
 */
export async function receiptsAndRollups(pool: pg.Pool): Promise<{ receipts: string[]; rollups: string[] }> {
  const { rows: receipts } = await pool.query<{ row: string }>(
    `SELECT concat_ws('|', account, hour, model_name, key_name, team_name, count(*),
              sum(CASE WHEN pricing_source IN ('free', 'cache_hit') THEN 1 ELSE 0 END),
              sum(CASE WHEN pricing_source = 'price_book' THEN 1 ELSE 0 END),
              sum(CASE WHEN pricing_source = 'reported_cost' THEN 1 ELSE 0 END),
              sum(prompt_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(completion_tokens), sum(reasoning_tokens),
              sum(charged_credits), sum(CASE WHEN pricing_source = 'price_book' THEN charged_credits ELSE 0 END),
              sum(CASE WHEN pricing_source = 'reported_cost' THEN charged_credits ELSE 0 END)) AS row
     FROM (SELECT *, billing_account_id AS account, to_char(coalesce(event_time, created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24') AS hour,
                  coalesce(canonical_model, model, '') AS model_name, coalesce(key_hash, '') AS key_name, coalesce(team_id, '') AS team_name
           FROM charge_receipts) r
     GROUP BY account, hour, model_name, key_name, team_name
     ORDER BY 1`,
  );
  const { rows: rollups } = await pool.query<{ row: string }>(
    `SELECT concat_ws('|', billing_account_id, to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24'), model, key_hash, team_id, calls,
              free_calls, priced_calls, reported_calls, input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
              charged_credits, priced_credits, reported_credits) AS row
     FROM usage_hourly ORDER BY 1`,
  );
  return { receipts: receipts.map((r) => r.row), rollups: rollups.map((r) => r.row) };
}

/** usage_hourly holds exactly the aggregate of the receipts. */
export async function expectRollupsEqualReceipts(pool: pg.Pool): Promise<void> {
  const { receipts, rollups } = await receiptsAndRollups(pool);
  expect(receipts.length).toBeGreaterThan(0);
  expect(rollups).toEqual(receipts);
}
