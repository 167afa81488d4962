import type { FastifyInstance, FastifyReply } from "fastify";
import { validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { ReceiverDeps } from "../platform/deps.js";
import {
  balanceStatus,
  computeInvoice,
  findAccountBalance,
  findReceipt,
  listLedgerEntries,
  listLiveBuckets,
  nextExpiry,
} from "../books/account-reads.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { recordGrant } from "../books/grants.js";
import { DEFAULT_PRIORITY, expiryProblem } from "../books/credit-buckets.js";
import { canonicalIdSchema, storableFreeText } from "../usage/storable-text.js";
import { parseAccountJson } from "./account-json.js";
import { bearerTokenMatches } from "./auth.js";
import {
  creditsJson,
  exactSerializerCompiler,
  grantResponseSchema,
  invoiceResponseSchema,
  ledgerEntryJson,
  ledgerResponseSchema,
  liveBucketJson,
  receiptJson,
  receiptResponseSchema,
  summaryResponseSchema,
} from "./account-responses.js";
import { errorResponseSchema, sendError } from "./errors.js";
import { usageRoutes } from "./usage-routes.js";
import { accountParams, receiptParams, walletRoutes } from "./wallet-routes.js";

const RECENT_ENTRIES = 10;

const grantBody = z.object({
  credits: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  reference: canonicalIdSchema,
  reason: storableFreeText(1024).nullish(),
  expires_at: z.iso
    .datetime({ offset: true })
    .superRefine((text, context) => {
      const problem = expiryProblem(new Date(text));
      if (problem !== null) context.addIssue({ code: "custom", message: problem });
    })
    .nullish()
    .meta({ description: "RFC 3339; what is left of the grant then leaves the balance (an expiry entry). Never, when left out." }),
  priority: z
    .number()
    .int()
    .min(0)
    .max(100)
    .default(DEFAULT_PRIORITY)
    .meta({ description: "consumption order: buckets of lower priority are spent first (0–100)" }),
}).meta({ id: "CreateGrant" });
const ledgerQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().regex(/^\d{1,18}$/, "not a cursor from this API").optional(),
});
const invoiceQuery = z.object({
  // PostgreSQL's timestamps have no year 0, and a period's end is the next month's start.
  period: z
    .string()
    .regex(/^\d{4}-(0[1-9]|1[0-2])$/, "expected YYYY-MM")
    .refine((period) => period >= "0001-01" && period <= "9999-11", "a month from 0001-01 to 9999-11"),
});

/** The account API for the product: grants, balances, ledger, invoices and receipts. */
export async function accountRoutes(scope: FastifyInstance, deps: ReceiverDeps): Promise<void> {
  const { db, pool } = deps.database;
  const thresholds = deps.settings.lowBalanceThresholds;
  // Requests are checked against each route's zod schemas, and every answer against its
  // response schema before it leaves, so a shape bug is a 500, never a wrong answer. A month's
  // totals can pass what a double holds; they are written as the exact integers they are.
  scope.setValidatorCompiler(validatorCompiler);
  scope.setSerializerCompiler(exactSerializerCompiler);
  scope.removeContentTypeParser("application/json");
  scope.addContentTypeParser("application/json", { parseAs: "buffer" }, async (_request: unknown, body: Buffer) => parseAccountJson(body));
  const app = scope.withTypeProvider<ZodTypeProvider>();

  // Every route here is in the OpenAPI document: one without its schemas stops the server.
  // Clients generated from the document name their methods by operationId.
  app.addHook("onRoute", (route) => {
    const schema = route.schema as { operationId?: string; summary?: string; response?: unknown; params?: unknown; tags?: string[] } | undefined;
    // Untagged, a route would drop out of the document (swagger hides untagged routes).
    if (!schema?.operationId || !schema.summary || !schema.response || (route.url.includes(":") && !schema.params) || !schema.tags?.includes("accounts")) {
      throw new Error(`${route.method} ${route.url}: an account route declares its operationId, summary, params, response schemas and the accounts tag`);
    }
  });

  app.addHook("onRequest", async (request, reply) => {
    if (!bearerTokenMatches(request.headers.authorization, [deps.settings.adminToken])) {
      return sendError(reply, "unauthorized", "the admin bearer token is required");
    }
  });

  // What every route may answer besides its own success.
  const errors = {
    400: errorResponseSchema.describe("a parameter, query or body field is invalid (named in the message)"),
    401: errorResponseSchema.describe("the admin bearer token is missing or wrong"),
    503: errorResponseSchema.describe("the database does not answer; try again (Retry-After)"),
  };
  const notFound = errorResponseSchema.describe("no such account (or receipt)");
  const common = { tags: ["accounts"], security: [{ adminToken: [] }] };
  walletRoutes(app, deps, { common, errors });
  usageRoutes(app, deps, { common, errors });

  app.post(
    "/v1/accounts/:id/grants",
    {
      schema: {
        ...common,
        operationId: "createGrant",
        summary: "Add credits to an account, once per reference",
        params: accountParams,
        body: grantBody,
        response: {
          200: grantResponseSchema.describe("this reference was granted before: the same grant, nothing added"),
          201: grantResponseSchema.describe("granted"),
          409: errorResponseSchema.describe("the reference was used for another grant (code grant_reference_conflict)"),
          422: errorResponseSchema.describe("the balance would pass 2^53 − 1 credits (code balance_out_of_range); nothing was granted"),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const { params, body } = request;
      const result = await recordGrant(pool, {
        billingAccountId: params.id,
        credits: BigInt(body.credits),
        reference: body.reference,
        reason: body.reason ?? null,
        terms: { priority: body.priority, expiresAt: body.expires_at ? new Date(body.expires_at) : null },
      }, deps.settings.enforcement);
      if (result.outcome === "conflict") {
        return sendError(reply, "grant_reference_conflict", "this reference was used for another grant", {
          grant: { billing_account_id: result.grant.billingAccountId, credits: creditsJson(result.grant.credits) },
        });
      }
      if (result.outcome === "out_of_range") {
        return sendError(reply, "balance_out_of_range", `credits: the balance would pass ${MAX_CREDITS} credits; nothing was granted`, {
          balance_credits: creditsJson(result.balanceCredits),
        });
      }
      const { grant } = result;
      return reply.code(result.outcome === "created" ? 201 : 200).send({
        grant: {
          id: grant.id,
          billing_account_id: grant.billingAccountId,
          credits: creditsJson(grant.credits),
          reference: grant.reference,
          reason: grant.reason,
          created_at: grant.createdAt.toISOString(),
          expires_at: grant.expiresAt?.toISOString() ?? null,
          priority: grant.priority,
        },
        balance_credits: creditsJson(result.balanceCredits),
      });
    },
  );

  app.get(
    "/v1/accounts/:id/credits/summary",
    {
      schema: {
        ...common,
        operationId: "getCreditsSummary",
        summary: "Balance, available credits and debt, status, live buckets, the next expiry and the last ten ledger entries",
        params: accountParams,
        response: { 200: summaryResponseSchema, 404: notFound, ...errors },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const balance = await findAccountBalance(db, id);
      if (balance === null) return unknownAccount(reply, id);
      const { entries } = await listLedgerEntries(db, id, { limit: RECENT_ENTRIES });
      const live = await listLiveBuckets(db, id);
      const soonest = await nextExpiry(db, id);
      return {
        billing_account_id: id,
        balance_credits: creditsJson(balance),
        available_credits: creditsJson(balance > 0n ? balance : 0n),
        debt_credits: creditsJson(balance < 0n ? -balance : 0n),
        status: balanceStatus(balance, thresholds),
        grants: live.map(liveBucketJson),
        next_expiry: soonest === null ? null : liveBucketJson(soonest),
        recent: entries.map(ledgerEntryJson),
      };
    },
  );

  app.get(
    "/v1/accounts/:id/ledger",
    {
      schema: {
        ...common,
        operationId: "getLedger",
        summary: "The account's ledger, newest first, a page at a time",
        params: accountParams,
        querystring: ledgerQuery,
        response: { 200: ledgerResponseSchema, 404: notFound, ...errors },
      },
    },
    async (request, reply) => {
      const { params, query } = request;
      if ((await findAccountBalance(db, params.id)) === null) return unknownAccount(reply, params.id);
      const page = await listLedgerEntries(db, params.id, {
        limit: query.limit,
        beforeId: query.cursor === undefined ? undefined : BigInt(query.cursor),
      });
      return {
        billing_account_id: params.id,
        entries: page.entries.map(ledgerEntryJson),
        next_cursor: page.nextBeforeId?.toString() ?? null,
      };
    },
  );

  app.get(
    "/v1/accounts/:id/invoice",
    {
      schema: {
        ...common,
        operationId: "getInvoice",
        summary: "A month's opening balance, credits granted and used, and closing balance (UTC months)",
        params: accountParams,
        querystring: invoiceQuery,
        response: { 200: invoiceResponseSchema, 404: notFound, ...errors },
      },
    },
    async (request, reply) => {
      const { params, query } = request;
      if ((await findAccountBalance(db, params.id)) === null) return unknownAccount(reply, params.id);
      const invoice = await computeInvoice(db, params.id, query.period);
      return {
        billing_account_id: params.id,
        period: invoice.period,
        opening_balance: creditsJson(invoice.openingBalance),
        credits_granted: creditsJson(invoice.creditsGranted),
        credits_used: creditsJson(invoice.creditsUsed),
        receipt_count: invoice.receiptCount,
        credits_expired: creditsJson(invoice.creditsExpired),
        credits_debited: creditsJson(invoice.creditsDebited),
        credits_reversed: creditsJson(invoice.creditsReversed),
        transfers_in: creditsJson(invoice.transfersIn),
        transfers_out: creditsJson(invoice.transfersOut),
        closing_balance: creditsJson(invoice.closingBalance),
        final: invoice.final,
        final_at: invoice.finalAt.toISOString(),
      };
    },
  );

  app.get(
    "/v1/receipts/:idempotency_key",
    {
      schema: {
        ...common,
        operationId: "getReceipt",
        summary: "The charge receipt of one call, by its idempotency key",
        params: receiptParams,
        response: { 200: receiptResponseSchema, 404: errorResponseSchema.describe("no receipt for this key (code receipt_not_found)"), ...errors },
      },
    },
    async (request, reply) => {
      const { idempotency_key } = request.params;
      const receipt = await findReceipt(db, idempotency_key);
      if (!receipt) return sendError(reply, "receipt_not_found", `no receipt for idempotency key ${idempotency_key}`);
      return receiptJson(receipt);
    },
  );
}

function unknownAccount(reply: FastifyReply, id: string) {
  return sendError(reply, "account_not_found", `no account ${id}`);
}
