import { decodeUsageCursor, MAX_USAGE_ROWS, readUsage, type UsageQuery, type UsageRow } from "../books/usage-reads.js";
import type { Db } from "../platform/db/client.js";

/** Pages of one usage read the console follows at most: 10,000 rows, far more than a chart draws. */
const PAGES_READ = 10;

/** Every row of a usage read (readUsage, the usage API's), page after page, up to PAGES_READ pages. */
async function readAllUsage(db: Db, query: Omit<UsageQuery, "limit" | "after">): Promise<UsageRow[]> {
  const rows: UsageRow[] = [];
  let after: UsageQuery["after"];
  for (let page = 0; page < PAGES_READ; page += 1) {
    const read = await readUsage(db, { ...query, limit: MAX_USAGE_ROWS, after });
    rows.push(...read.rows);
    if (read.nextCursor === null) break;
    const decoded = decodeUsageCursor(query, read.nextCursor);
    if (!decoded.ok) break;
    after = decoded.position;
  }
  return rows;
}

/** Credits charged per UTC day over [from, to), every account. */
export async function chargedPerDay(db: Db, from: Date, to: Date): Promise<Array<{ day: Date; credits: bigint }>> {
  const rows = await readAllUsage(db, { from, to, granularity: "day" });
  return rows.map((row) => ({ day: row.periodStart, credits: row.chargedCredits }));
}

/** One account's credits per UTC day and model over [from, to). */
export async function accountChargedPerDayByModel(db: Db, billingAccountId: string, from: Date, to: Date): Promise<Array<{ day: Date; model: string; credits: bigint }>> {
  const rows = await readAllUsage(db, { billingAccountId, from, to, granularity: "day", groupBy: "model" });
  return rows.map((row) => ({ day: row.periodStart, model: row.group ?? "", credits: row.chargedCredits }));
}

/** One account's keys (by hash) or teams charged most over [from, to): the months' rows summed. */
export async function accountTopPayers(
  db: Db,
  billingAccountId: string,
  by: "key" | "team",
  from: Date,
  to: Date,
  limit: number,
): Promise<Array<{ payer: string; credits: bigint; calls: bigint }>> {
  const totals = new Map<string, { credits: bigint; calls: bigint }>();
  for (const row of await readAllUsage(db, { billingAccountId, from, to, granularity: "month", groupBy: by })) {
    const total = totals.get(row.group ?? "") ?? { credits: 0n, calls: 0n };
    totals.set(row.group ?? "", { credits: total.credits + row.chargedCredits, calls: total.calls + row.calls });
  }
  return [...totals.entries()]
    .map(([payer, total]) => ({ payer, ...total }))
    .sort((a, b) => (a.credits === b.credits ? (a.payer < b.payer ? -1 : 1) : a.credits > b.credits ? -1 : 1))
    .slice(0, limit);
}
