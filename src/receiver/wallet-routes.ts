import type { IncomingMessage, ServerResponse } from "node:http";
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { deliverCommittedAlerts } from "../books/alert-outbox.js";
import { expiryProblem } from "../books/credit-buckets.js";
import { recordDebit } from "../books/debits.js";
import { type ReversalRecord, recordReversal } from "../books/reversals.js";
import { recordTransfer, type TransferRecord } from "../books/transfers.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { TRANSFER_EXPIRATIONS } from "../platform/db/ledger-kinds.js";
import type { ReceiverDeps } from "../platform/deps.js";
import { canonicalIdSchema, statedReason } from "../usage/storable-text.js";
import { creditsJson, debitResponseSchema, reversalResponseSchema, transferResponseSchema } from "./account-responses.js";
import { errorResponseSchema, sendError } from "./errors.js";

/** The account routes' scope: requests and answers checked by their zod schemas (account-routes.ts). */
export type AccountApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, ZodTypeProvider>;

/** What every account route declares besides its own: tags, security, and the answers any may give. */
export type AccountRouteCommon = {
  common: { tags: string[]; security: Array<Record<string, never[]>> };
  errors: Record<400 | 401 | 503, typeof errorResponseSchema>;
};

// Ids in their one canonical form, as at ingest and in the CLI.
export const accountParams = z.object({ id: canonicalIdSchema.meta({ description: "the billing account" }) });
export const receiptParams = z.object({ idempotency_key: canonicalIdSchema.meta({ description: "the call's idempotency key (LiteLLM's id)" }) });

const debitBody = z.object({
  credits: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  reference: canonicalIdSchema,
  reason: statedReason(1024).meta({ description: "what the charge is for: a seat fee, a settlement" }),
}).meta({ id: "CreateDebit" });
const transferBody = z
  .object({
    to: canonicalIdSchema.meta({ description: "the destination account (another account than the source)" }),
    credits: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    reference: canonicalIdSchema,
    expiration: z.enum(TRANSFER_EXPIRATIONS).meta({
      description: "preserve: the expiries and priorities of the source buckets drawn (the overdraft part evergreen); none: evergreen; fixed: at expires_at",
    }),
    expires_at: z.iso
      .datetime({ offset: true })
      .optional()
      .meta({ description: "RFC 3339, in the future: required with expiration fixed, and only then" }),
    allow_overdraft: z.boolean().default(false).meta({ description: "let the source's balance go below zero rather than answer 422" }),
  })
  .superRefine((body, context) => {
    if (body.expiration !== "fixed") {
      if (body.expires_at !== undefined) context.addIssue({ code: "custom", path: ["expires_at"], message: "only with expiration fixed" });
      return;
    }
    const problem = body.expires_at === undefined ? "required with expiration fixed" : expiryProblem(new Date(body.expires_at));
    if (problem !== null) context.addIssue({ code: "custom", path: ["expires_at"], message: problem });
  })
  .meta({ id: "CreateTransfer" });
const reversalBody = z.object({
  reference: canonicalIdSchema,
  reason: statedReason(1024).meta({ description: "why the charge is given back: a provider outage, a support gesture" }),
  credits: z
    .number()
    .int()
    .positive()
    .max(Number.MAX_SAFE_INTEGER)
    .optional()
    .meta({ description: "how much to give back; the whole charge when left out (not what earlier reversals left)" }),
}).meta({ id: "CreateReversal" });

/** Money moved by hand: manual debits, transfers and reversals. */
export function walletRoutes(app: AccountApp, deps: ReceiverDeps, { common, errors }: AccountRouteCommon): void {
  const { pool } = deps.database;
  const policy = { lowBalanceThresholds: deps.settings.lowBalanceThresholds, enforcement: deps.settings.enforcement };

  app.post(
    "/v1/accounts/:id/debits",
    {
      schema: {
        ...common,
        operationId: "createDebit",
        summary: "Charge an account for something that is not a model call, once per reference",
        params: accountParams,
        body: debitBody,
        response: {
          200: debitResponseSchema.describe("this reference was debited before: the same debit, nothing charged again"),
          201: debitResponseSchema.describe("debited; never refused for lack of credit (the balance may go below zero)"),
          409: errorResponseSchema.describe("the reference was used for another debit (code debit_reference_conflict)"),
          422: errorResponseSchema.describe("the balance would pass −(2^53 − 1) credits (code balance_out_of_range); nothing was debited"),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const { params, body } = request;
      const result = await recordDebit(pool, { billingAccountId: params.id, credits: BigInt(body.credits), reference: body.reference, reason: body.reason }, policy);
      if (result.outcome === "conflict") {
        return sendError(reply, "debit_reference_conflict", "this reference was used for another debit", {
          debit: { billing_account_id: result.debit.billingAccountId, credits: creditsJson(result.debit.credits) },
        });
      }
      if (result.outcome === "out_of_range") {
        return sendError(reply, "balance_out_of_range", `credits: the balance would pass -${MAX_CREDITS} credits; nothing was debited`, {
          balance_credits: creditsJson(result.balanceCredits),
        });
      }
      if (result.outcome === "created") await deliverCommittedAlerts(pool, deps.logger, result.alerts);
      const { debit } = result;
      return reply.code(result.outcome === "created" ? 201 : 200).send({
        debit: {
          id: debit.id,
          billing_account_id: debit.billingAccountId,
          credits: creditsJson(debit.credits),
          reference: debit.reference,
          reason: debit.reason,
          created_at: debit.createdAt.toISOString(),
        },
        balance_credits: creditsJson(result.balanceCredits),
      });
    },
  );

  app.post(
    "/v1/accounts/:id/transfers",
    {
      schema: {
        ...common,
        operationId: "createTransfer",
        summary: "Move credits to another account, once per reference",
        params: accountParams,
        body: transferBody,
        response: {
          200: transferResponseSchema.describe("this reference was transferred before: the same transfer, nothing moved again"),
          201: transferResponseSchema.describe("transferred"),
          409: errorResponseSchema.describe("the reference was used for another transfer (code transfer_reference_conflict)"),
          422: errorResponseSchema.describe(
            "more than the source's available credits without allow_overdraft (code insufficient_credits), or a balance would pass ±(2^53 − 1) (code balance_out_of_range); nothing was moved",
          ),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const { params, body } = request;
      if (body.to === params.id) return sendError(reply, "invalid_request", "to: must be another account than the source");
      const result = await recordTransfer(
        pool,
        {
          fromAccountId: params.id,
          toAccountId: body.to,
          credits: BigInt(body.credits),
          reference: body.reference,
          expiration: body.expiration,
          expiresAt: body.expires_at === undefined ? null : new Date(body.expires_at),
          allowOverdraft: body.allow_overdraft,
        },
        policy,
      );
      if (result.outcome === "conflict") {
        return sendError(reply, "transfer_reference_conflict", "this reference was used for another transfer", {
          transfer: transferJson(result.transfer),
        });
      }
      if (result.outcome === "insufficient_credits") {
        return sendError(reply, "insufficient_credits", `credits: more than the ${result.availableCredits} available; nothing was moved (allow_overdraft to go below zero)`, {
          available_credits: creditsJson(result.availableCredits),
        });
      }
      if (result.outcome === "out_of_range") {
        return sendError(reply, "balance_out_of_range", `credits: the balance of ${result.billingAccountId} would pass ±${MAX_CREDITS} credits; nothing was moved`, {
          balance_credits: creditsJson(result.balanceCredits),
        });
      }
      if (result.outcome === "created") await deliverCommittedAlerts(pool, deps.logger, result.alerts);
      return reply.code(result.outcome === "created" ? 201 : 200).send({
        transfer: transferJson(result.transfer),
        from_balance_credits: creditsJson(result.fromBalance),
        to_balance_credits: creditsJson(result.toBalance),
      });
    },
  );

  app.post(
    "/v1/receipts/:idempotency_key/reversals",
    {
      schema: {
        ...common,
        operationId: "createReversal",
        summary: "Give a charge back in whole or in part, once per reference",
        params: receiptParams,
        body: reversalBody,
        response: {
          200: reversalResponseSchema.describe("this reference was used before for this reversal: the same reversal, nothing given back again"),
          201: reversalResponseSchema.describe("given back: the account's debt first, then to the charge's buckets still live, the rest evergreen"),
          404: errorResponseSchema.describe("no receipt for this key (code receipt_not_found)"),
          409: errorResponseSchema.describe("the reference was used for another reversal (code reversal_reference_conflict)"),
          422: errorResponseSchema.describe(
            "the receipt's reversals would sum past its charge (code reversal_exceeds_charge), or the balance would pass 2^53 − 1 (code balance_out_of_range); nothing was given back",
          ),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const { params, body } = request;
      const result = await recordReversal(
        pool,
        { idempotencyKey: params.idempotency_key, reference: body.reference, reason: body.reason, credits: body.credits === undefined ? null : BigInt(body.credits) },
        policy.enforcement,
      );
      if (result.outcome === "unknown_receipt") return sendError(reply, "receipt_not_found", `no receipt for idempotency key ${params.idempotency_key}`);
      if (result.outcome === "conflict") {
        return sendError(reply, "reversal_reference_conflict", "this reference was used for another reversal", {
          reversal: reversalJson(result.reversal),
        });
      }
      if (result.outcome === "exceeds_charge") {
        return sendError(reply, "reversal_exceeds_charge", `credits: the charge was ${result.chargedCredits} and ${result.reversedCredits} of it is given back already; nothing was given back`, {
          charged_credits: creditsJson(result.chargedCredits),
          reversed_credits: creditsJson(result.reversedCredits),
        });
      }
      if (result.outcome === "out_of_range") {
        return sendError(reply, "balance_out_of_range", `credits: the balance would pass ${MAX_CREDITS} credits; nothing was given back`, {
          balance_credits: creditsJson(result.balanceCredits),
        });
      }
      return reply.code(result.outcome === "created" ? 201 : 200).send({
        reversal: reversalJson(result.reversal),
        reversed_credits: creditsJson(result.reversedCredits),
        balance_credits: creditsJson(result.balanceCredits),
      });
    },
  );
}

function reversalJson(reversal: ReversalRecord) {
  return {
    id: reversal.id,
    idempotency_key: reversal.idempotencyKey,
    billing_account_id: reversal.billingAccountId,
    credits: creditsJson(reversal.credits),
    reference: reversal.reference,
    reason: reversal.reason,
    created_at: reversal.createdAt.toISOString(),
  };
}

function transferJson(transfer: TransferRecord) {
  return {
    id: transfer.id,
    from: transfer.fromAccountId,
    to: transfer.toAccountId,
    credits: creditsJson(transfer.credits),
    reference: transfer.reference,
    expiration: transfer.expiration,
    expires_at: transfer.expiresAt?.toISOString() ?? null,
    allow_overdraft: transfer.allowOverdraft,
    created_at: transfer.createdAt.toISOString(),
  };
}
