import type { FastifyInstance, FastifyReply } from "fastify";
import { z } from "zod";
import type { Deps } from "../platform/deps.js";
import {
  balanceStatus,
  computeInvoice,
  findAccountBalance,
  findReceipt,
  listLedgerEntries,
} from "../books/account-reads.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { recordGrant } from "../books/grants.js";
import { canonicalIdSchema, storableFreeText } from "../usage/storable-text.js";
import { bearerTokenMatches } from "./auth.js";
import {
  creditsJson,
  exactJson,
  grantResponseSchema,
  invoiceResponseSchema,
  ledgerEntryJson,
  ledgerResponseSchema,
  receiptJson,
  receiptResponseSchema,
  summaryResponseSchema,
} from "./account-responses.js";
import { parseOrReject, sendError } from "./errors.js";

const RECENT_ENTRIES = 10;

// Ids and references in their one canonical form, as at ingest and in the CLI.
const accountParams = z.object({ id: canonicalIdSchema });
const receiptParams = z.object({ key: canonicalIdSchema });
const grantBody = z.object({
  credits: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  reference: canonicalIdSchema,
  reason: storableFreeText(1024).nullish(),
});
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
export async function accountRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  const { db, pool } = deps.database;
  const thresholds = deps.settings.lowBalanceThresholds;
  // A month's totals can pass what a double holds; they are written as the exact integers they are.
  app.setReplySerializer(exactJson);

  app.addHook("onRequest", async (request, reply) => {
    if (!bearerTokenMatches(request.headers.authorization, [deps.settings.adminToken])) {
      return sendError(reply, 401, "unauthorized", "the admin bearer token is required");
    }
  });

  app.post("/v1/accounts/:id/grants", async (request, reply) => {
    const params = parseOrReject(accountParams, request.params, reply);
    const body = params && parseOrReject(grantBody, request.body, reply);
    if (!params || !body) return reply;
    const result = await recordGrant(pool, {
      billingAccountId: params.id,
      credits: BigInt(body.credits),
      reference: body.reference,
      reason: body.reason ?? null,
    });
    if (result.outcome === "conflict") {
      return sendError(reply, 409, "grant_reference_conflict", "this reference was used for another grant", {
        grant: { billing_account_id: result.grant.billingAccountId, credits: creditsJson(result.grant.credits) },
      });
    }
    if (result.outcome === "out_of_range") {
      return sendError(reply, 422, "balance_out_of_range", `credits: the balance would pass ${MAX_CREDITS} credits; nothing was granted`, {
        balance_credits: creditsJson(result.balanceCredits),
      });
    }
    const { grant } = result;
    return reply.code(result.outcome === "created" ? 201 : 200).send(grantResponseSchema.parse({
      grant: {
        id: grant.id,
        billing_account_id: grant.billingAccountId,
        credits: creditsJson(grant.credits),
        reference: grant.reference,
        reason: grant.reason,
        created_at: grant.createdAt.toISOString(),
      },
      balance_credits: creditsJson(result.balanceCredits),
    }));
  });

  app.get("/v1/accounts/:id/credits/summary", async (request, reply) => {
    const params = parseOrReject(accountParams, request.params, reply);
    if (!params) return reply;
    const balance = await findAccountBalance(db, params.id);
    if (balance === null) return unknownAccount(reply, params.id);
    const { entries } = await listLedgerEntries(db, params.id, { limit: RECENT_ENTRIES });
    return summaryResponseSchema.parse({
      billing_account_id: params.id,
      balance_credits: creditsJson(balance),
      status: balanceStatus(balance, thresholds),
      recent: entries.map(ledgerEntryJson),
    });
  });

  app.get("/v1/accounts/:id/ledger", async (request, reply) => {
    const params = parseOrReject(accountParams, request.params, reply);
    const query = params && parseOrReject(ledgerQuery, request.query, reply);
    if (!params || !query) return reply;
    if ((await findAccountBalance(db, params.id)) === null) return unknownAccount(reply, params.id);
    const page = await listLedgerEntries(db, params.id, {
      limit: query.limit,
      beforeId: query.cursor === undefined ? undefined : BigInt(query.cursor),
    });
    return ledgerResponseSchema.parse({
      billing_account_id: params.id,
      entries: page.entries.map(ledgerEntryJson),
      next_cursor: page.nextBeforeId?.toString() ?? null,
    });
  });

  app.get("/v1/accounts/:id/invoice", async (request, reply) => {
    const params = parseOrReject(accountParams, request.params, reply);
    const query = params && parseOrReject(invoiceQuery, request.query, reply);
    if (!params || !query) return reply;
    if ((await findAccountBalance(db, params.id)) === null) return unknownAccount(reply, params.id);
    const invoice = await computeInvoice(db, params.id, query.period);
    return invoiceResponseSchema.parse({
      billing_account_id: params.id,
      period: invoice.period,
      opening_balance: creditsJson(invoice.openingBalance),
      credits_granted: creditsJson(invoice.creditsGranted),
      credits_used: creditsJson(invoice.creditsUsed),
      receipt_count: invoice.receiptCount,
      closing_balance: creditsJson(invoice.closingBalance),
      final: invoice.final,
      final_at: invoice.finalAt.toISOString(),
    });
  });

  app.get("/v1/receipts/:key", async (request, reply) => {
    const params = parseOrReject(receiptParams, request.params, reply);
    if (!params) return reply;
    const { key } = params;
    const receipt = await findReceipt(db, key);
    if (!receipt) return sendError(reply, 404, "receipt_not_found", `no receipt for idempotency key ${key}`);
    return receiptResponseSchema.parse(receiptJson(receipt));
  });
}

function unknownAccount(reply: FastifyReply, id: string) {
  return sendError(reply, 404, "account_not_found", `no account ${id}`);
}
