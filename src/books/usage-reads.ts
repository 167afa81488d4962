import { createHash } from "node:crypto";
import { and, eq, gte, lt, type SQL, sql } from "drizzle-orm";
import type { AnyPgColumn } from "drizzle-orm/pg-core";
import type { Db } from "../platform/db/client.js";
import { usageHourly } from "../platform/db/schema.js";

/**
 * What accounts used, read from usage_hourly (never from the receipts): calls, tokens and credits
 * per UTC hour, day or month, in total or by model, key, team or account. The usage API and the
 * console read it through `readUsage`, and nothing else reads usage_hourly for them.
 */

export const USAGE_GRANULARITIES = ["hour", "day", "month"] as const;
export type UsageGranularity = (typeof USAGE_GRANULARITIES)[number];

/** `account` groups every account's usage (the all-accounts read); the others one account's or all. */
export const USAGE_GROUPS = ["model", "key", "team", "account"] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

/**
 * The longest range each granularity reads, in days. What a read costs grows with the hours it
 * spans (each holds an account's rows for every model, key and team it used), so the bound is a
 * bound on every request's cost: a month of hours, a quarter of days, a year of months.
 */
export const MAX_RANGE_DAYS: Record<UsageGranularity, number> = { hour: 31, day: 92, month: 366 };

/** The most rows one read answers; the rest is behind its cursor. */
export const MAX_USAGE_ROWS = 1000;

export type UsageQuery = {
  /** One account's usage; every account's when left out. */
  billingAccountId?: string;
  /** [from, to): UTC hour starts. */
  from: Date;
  to: Date;
  granularity: UsageGranularity;
  /** Totals per period when left out. */
  groupBy?: UsageGroup;
  limit: number;
  /** Where the previous page ended (decodeUsageCursor), for the rows after it. */
  after?: UsagePosition;
};

/** A row's place in the order: period, then charged credits descending, then the group. */
export type UsagePosition = { periodStart: Date; chargedCredits: bigint; group: string | null };

export type UsageTotals = {
  calls: bigint;
  freeCalls: bigint;
  pricedCalls: bigint;
  reportedCalls: bigint;
  inputTokens: bigint;
  cachedTokens: bigint;
  cacheWriteTokens: bigint;
  outputTokens: bigint;
  reasoningTokens: bigint;
  chargedCredits: bigint;
  pricedCredits: bigint;
  reportedCredits: bigint;
};

/** `group` is the model, key hash, team or account; null when not grouped, or for calls that had none. */
export type UsageRow = UsageTotals & { periodStart: Date; group: string | null };

export type UsagePage = { rows: UsageRow[]; nextCursor: string | null };

const GROUP_COLUMN = {
  model: usageHourly.model,
  key: usageHourly.keyHash,
  team: usageHourly.teamId,
  account: usageHourly.billingAccountId,
} as const;

const SUMMED = {
  calls: usageHourly.calls,
  freeCalls: usageHourly.freeCalls,
  pricedCalls: usageHourly.pricedCalls,
  reportedCalls: usageHourly.reportedCalls,
  inputTokens: usageHourly.inputTokens,
  cachedTokens: usageHourly.cachedTokens,
  cacheWriteTokens: usageHourly.cacheWriteTokens,
  outputTokens: usageHourly.outputTokens,
  reasoningTokens: usageHourly.reasoningTokens,
  chargedCredits: usageHourly.chargedCredits,
  pricedCredits: usageHourly.pricedCredits,
  reportedCredits: usageHourly.reportedCredits,
} as const;

/**
 * One page of usage, in periods from the earliest; within a period, by charged credits, the most
 * first (so a period's first rows are its top models, keys, teams or accounts), then by group.
 * The scan is an index range: (account, hour) of the primary key for one account, the hour index
 * for all; the range bound (MAX_RANGE_DAYS) bounds the rows it aggregates, and LIMIT the answer.
 */
export async function readUsage(db: Db, query: UsageQuery): Promise<UsagePage> {
  const rows = await usageStatement(db, query);
  const page = rows.slice(0, query.limit).map((row): UsageRow => ({
    periodStart: new Date(Number(row.periodStart) * 1000),
    // '' is how usage_hourly keeps a call without a model, key or team.
    group: row.group === null || row.group === "" ? null : row.group,
    ...(Object.fromEntries(Object.keys(SUMMED).map((name) => [name, BigInt(row[name as keyof UsageTotals])])) as UsageTotals),
  }));
  const last = rows.length > query.limit ? page[page.length - 1]! : undefined;
  return {
    rows: page,
    nextCursor: last === undefined ? null : encodeUsageCursor(query, { periodStart: last.periodStart, chargedCredits: last.chargedCredits, group: rows[query.limit - 1]!.group }),
  };
}

/** readUsage's one statement, unrun: the bench explains it (`.toSQL()`). */
export function usageStatement(db: Db, query: UsageQuery) {
  // Literal SQL, no parameter: GROUP BY must repeat the select's expressions exactly. The
  // 3-argument date_trunc buckets in UTC whatever the session's time zone; an hour is the
  // column itself (a UTC hour start already), which spares the zone arithmetic on every row.
  const period =
    query.granularity === "hour" ? sql<string>`${usageHourly.hour}` : sql<string>`date_trunc('${sql.raw(query.granularity)}', ${usageHourly.hour}, 'UTC')`;
  const groupColumn = query.groupBy === undefined ? undefined : GROUP_COLUMN[query.groupBy];
  const charged = sql`sum(${usageHourly.chargedCredits})`;
  const after = query.after;
  // Sums of bigints are numeric: read as text, kept exact as bigints.
  const sums = Object.fromEntries(Object.entries(SUMMED).map(([name, column]) => [name, sql<string>`sum(${column})::text`])) as Record<keyof UsageTotals, SQL<string>>;
  const earliest = after === undefined || after.periodStart < query.from ? query.from : after.periodStart;
  return db
    .select({
      // Epoch seconds: exact, and free of the driver's and the session's time-zone handling.
      periodStart: sql<string>`extract(epoch from ${period})::bigint::text`,
      group: groupColumn === undefined ? sql<string | null>`null` : sql<string | null>`${groupColumn}`,
      ...sums,
    })
    .from(usageHourly)
    .where(
      // A period at or after the cursor's starts at or after its start: no earlier hour is read.
      query.billingAccountId === undefined
        ? and(gte(usageHourly.hour, earliest), lt(usageHourly.hour, query.to))
        : // (account, hour) as a row: only the primary key's range can serve it. With a plain
          // hour condition the planner takes the hour index for a busy account (its rows are a
          // good part of every hour's) and reads every account's month to keep one's.
          and(
            eq(usageHourly.billingAccountId, query.billingAccountId),
            sql`(${usageHourly.billingAccountId}, ${usageHourly.hour}) >= (${query.billingAccountId}, ${earliest})`,
            sql`(${usageHourly.billingAccountId}, ${usageHourly.hour}) < (${query.billingAccountId}, ${query.to})`,
          ),
    )
    .groupBy(...(groupColumn === undefined ? [period] : [period, groupColumn]))
    .having(after === undefined ? undefined : afterPosition(period, charged, groupColumn, after))
    .orderBy(sql`${period} asc`, sql`${charged} desc`, ...(groupColumn === undefined ? [] : [sql`${groupColumn} asc`]))
    .limit(query.limit + 1);
}

/** The rows after `after` in readUsage's order. */
function afterPosition(period: SQL, charged: SQL, groupColumn: AnyPgColumn | undefined, after: UsagePosition): SQL {
  const start = after.periodStart;
  const credits = sql`${after.chargedCredits.toString()}::numeric`;
  const laterInPeriod =
    groupColumn === undefined
      ? sql`false`
      : sql`(${charged} < ${credits} or (${charged} = ${credits} and ${groupColumn} > ${after.group ?? ""}))`;
  return sql`(${period} > ${start} or (${period} = ${start} and ${laterInPeriod}))`;
}

/**
 * A cursor names the query it belongs to (a digest of its filters) and the last row's position.
 * It carries no secret and needs none: whoever holds it may read the whole range anyway, so an
 * edited one can only start a page elsewhere in what the caller could read. It is checked so that
 * a cursor from another query, or text that was never a cursor, is a 400 rather than a wrong page.
 */
function queryDigest(query: Pick<UsageQuery, "billingAccountId" | "from" | "to" | "granularity" | "groupBy">): string {
  const filters = [query.billingAccountId ?? null, query.from.toISOString(), query.to.toISOString(), query.granularity, query.groupBy ?? null];
  return createHash("sha256").update(JSON.stringify(filters)).digest("base64url").slice(0, 16);
}

function encodeUsageCursor(query: UsageQuery, position: UsagePosition): string {
  const payload = { q: queryDigest(query), p: position.periodStart.getTime(), c: position.chargedCredits.toString(), g: position.group ?? "" };
  return Buffer.from(JSON.stringify(payload)).toString("base64url");
}

export type DecodedCursor = { ok: true; position: UsagePosition } | { ok: false; message: string };

/** The position a cursor from readUsage names, if it was made for this query. */
export function decodeUsageCursor(query: Omit<UsageQuery, "limit" | "after">, cursor: string): DecodedCursor {
  const refused = { ok: false, message: "not a cursor from this API" } as const;
  if (!/^[A-Za-z0-9_-]{1,4096}$/.test(cursor)) return refused;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    return refused;
  }
  const { q, p, c, g } = (payload ?? {}) as Record<string, unknown>;
  if (typeof q !== "string" || typeof p !== "number" || typeof c !== "string" || typeof g !== "string") return refused;
  if (q !== queryDigest(query)) return { ok: false, message: "a cursor from another query (other filters): start again without it" };
  // A period starts at most a month before `from` (the month it falls in) and before `to`.
  if (!Number.isSafeInteger(p) || p < query.from.getTime() - 31 * 86_400_000 || p >= query.to.getTime() || !/^\d{1,40}$/.test(c)) return refused;
  return { ok: true, position: { periodStart: new Date(p), chargedCredits: BigInt(c), group: g } };
}
