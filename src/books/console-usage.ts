import type pg from "pg";

/**
 * The console's reads of usage_hourly, until the usage query API's read (src/books/usage-reads.ts,
 * issue 28) is there to take their place: each is one of its granularity / group_by questions.
 * Bounded by the hours asked for, through usage_hourly's primary key (one account) or
 * usage_hourly_hour_idx (every account), and a LIMIT.
 */

/** Credits charged per UTC day over [from, to), every account. */
export async function chargedPerDay(pool: pg.Pool, from: Date, to: Date): Promise<Array<{ day: Date; credits: bigint }>> {
  const { rows } = await pool.query<{ day: Date; credits: string }>(
    `SELECT date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day, sum(charged_credits)::text AS credits
       FROM usage_hourly WHERE hour >= $1 AND hour < $2 GROUP BY 1 ORDER BY 1 LIMIT 400`,
    [from, to],
  );
  return rows.map((row) => ({ day: row.day, credits: BigInt(row.credits) }));
}

/** One account's credits per UTC day and model over [from, to). */
export async function accountChargedPerDayByModel(
  pool: pg.Pool,
  billingAccountId: string,
  from: Date,
  to: Date,
): Promise<Array<{ day: Date; model: string; credits: bigint; calls: bigint }>> {
  const { rows } = await pool.query<{ day: Date; model: string; credits: string; calls: string }>(
    `SELECT date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day, model, sum(charged_credits)::text AS credits, sum(calls)::text AS calls
       FROM usage_hourly WHERE billing_account_id = $1 AND hour >= $2 AND hour < $3
      GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 10000`,
    [billingAccountId, from, to],
  );
  return rows.map((row) => ({ day: row.day, model: row.model, credits: BigInt(row.credits), calls: BigInt(row.calls) }));
}

/** One account's keys (by hash) or teams that were charged most over [from, to). */
export async function accountTopPayers(
  pool: pg.Pool,
  billingAccountId: string,
  by: "key" | "team",
  from: Date,
  to: Date,
  limit: number,
): Promise<Array<{ payer: string; credits: bigint; calls: bigint }>> {
  const column = by === "key" ? "key_hash" : "team_id";
  const { rows } = await pool.query<{ payer: string; credits: string; calls: string }>(
    `SELECT ${column} AS payer, sum(charged_credits)::text AS credits, sum(calls)::text AS calls
       FROM usage_hourly WHERE billing_account_id = $1 AND hour >= $2 AND hour < $3
      GROUP BY 1 ORDER BY sum(charged_credits) DESC, 1 LIMIT $4`,
    [billingAccountId, from, to, limit],
  );
  return rows.map((row) => ({ payer: row.payer, credits: BigInt(row.credits), calls: BigInt(row.calls) }));
}
