import { z } from "zod";
import { findAccountBalance } from "../books/account-reads.js";
import {
  decodeUsageCursor,
  MAX_RANGE_DAYS,
  MAX_USAGE_ROWS,
  readUsage,
  USAGE_GRANULARITIES,
  USAGE_GROUPS,
  type UsageQuery,
} from "../books/usage-reads.js";
import type { ReceiverDeps } from "../platform/deps.js";
import { usageResponseSchema, usageRowJson } from "./account-responses.js";
import { errorResponseSchema, InvalidRequestError, sendError } from "./errors.js";
import { type AccountApp, type AccountRouteCommon, accountParams } from "./wallet-routes.js";

const HOUR_MS = 3_600_000;

/**
 * A UTC hour start, as RFC 3339 ending in `Z`. An offset is refused rather than converted: the
 * periods are UTC days and months, and a caller writing +02:00 may expect its own.
 */
const utcHour = (description: string) =>
  z.iso
    .datetime()
    .refine((text) => new Date(text).getTime() % HOUR_MS === 0, "must be the start of an hour (minutes, seconds and fractions zero): usage is kept by the hour")
    .refine((text) => text >= "1970", "a time from 1970 on")
    .meta({ description: `${description}, a UTC hour start in RFC 3339 ending in Z (2027-01-31T00:00:00Z)` });

const usageQuery = (groups: readonly [string, ...string[]]) =>
  z
    .object({
      from: utcHour("the first hour read"),
      to: utcHour("the end of the range, not included"),
      granularity: z.enum(USAGE_GRANULARITIES).meta({ description: "the period of each row, in UTC" }),
      group_by: z.enum(groups).optional().meta({ description: "one row per period and group; one per period when left out" }),
      limit: z.coerce.number().int().min(1).max(MAX_USAGE_ROWS).default(100),
      cursor: z.string().max(4096).optional().meta({ description: "next_cursor of the previous page, with the same filters" }),
    })
    .superRefine((query, context) => {
      const span = new Date(query.to).getTime() - new Date(query.from).getTime();
      if (span <= 0) context.addIssue({ code: "custom", path: ["to"], message: "must be after from" });
      const maxDays = MAX_RANGE_DAYS[query.granularity];
      if (span > maxDays * 24 * HOUR_MS) {
        context.addIssue({ code: "custom", path: ["to"], message: `at most ${maxDays} days after from with granularity ${query.granularity}` });
      }
    });

// Every account's usage may also be grouped by account: top-N accounts by credits.
const accountUsageQuery = usageQuery(USAGE_GROUPS.filter((group) => group !== "account") as [string, ...string[]]);
const allUsageQuery = usageQuery(USAGE_GROUPS);

type ParsedQuery = z.output<typeof allUsageQuery>;

/** The read the query asks for; a cursor from another query, or no cursor at all, is a 400 naming it. */
function readOf(billingAccountId: string | undefined, query: ParsedQuery): UsageQuery {
  const filters = {
    billingAccountId,
    from: new Date(query.from),
    to: new Date(query.to),
    granularity: query.granularity,
    groupBy: query.group_by as UsageQuery["groupBy"],
  };
  if (query.cursor === undefined) return { ...filters, limit: query.limit };
  const decoded = decodeUsageCursor(filters, query.cursor);
  if (!decoded.ok) throw new InvalidRequestError([{ path: "cursor", message: decoded.message }]);
  return { ...filters, limit: query.limit, after: decoded.position };
}

/** Usage by period, model, key, team or account, read from the hourly rollup. */
export function usageRoutes(app: AccountApp, deps: ReceiverDeps, { common, errors }: AccountRouteCommon): void {
  const { db } = deps.database;

  const answer = async (read: UsageQuery) => {
    const page = await readUsage(db, read);
    return {
      billing_account_id: read.billingAccountId ?? null,
      from: read.from.toISOString(),
      to: read.to.toISOString(),
      granularity: read.granularity,
      group_by: read.groupBy ?? null,
      rows: page.rows.map((row) => usageRowJson(row, read.groupBy !== undefined)),
      next_cursor: page.nextCursor,
    };
  };

  app.get(
    "/v1/accounts/:id/usage",
    {
      schema: {
        ...common,
        operationId: "getAccountUsage",
        summary: "An account's calls, tokens and credits per UTC hour, day or month, in total or by model, key or team",
        params: accountParams,
        querystring: accountUsageQuery,
        response: { 200: usageResponseSchema, 404: errorResponseSchema.describe("no such account (code account_not_found)"), ...errors },
      },
    },
    async (request, reply) => {
      const { params, query } = request;
      const read = readOf(params.id, query);
      if ((await findAccountBalance(db, params.id)) === null) return sendError(reply, "account_not_found", `no account ${params.id}`);
      return answer(read);
    },
  );

  app.get(
    "/v1/usage",
    {
      schema: {
        ...common,
        operationId: "getUsage",
        summary: "Every account's usage per UTC hour, day or month, in total or by model, key, team or account (top accounts by credits)",
        querystring: allUsageQuery,
        response: { 200: usageResponseSchema, ...errors },
      },
    },
    async (request) => answer(readOf(undefined, request.query)),
  );
}
