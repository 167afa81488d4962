import type { IncomingMessage, ServerResponse } from "node:http";
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { deliverAlerts } from "../books/alert-outbox.js";
import { recordDebit } from "../books/debits.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import type { Deps } from "../platform/deps.js";
import { canonicalIdSchema, storableFreeText } from "../usage/storable-text.js";
import { creditsJson, debitResponseSchema } from "./account-responses.js";
import { errorResponseSchema, sendError } from "./errors.js";

/** The account routes' scope: requests and answers checked by their zod schemas (account-routes.ts). */
export type AccountApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, ZodTypeProvider>;

/** What every account route declares besides its own: tags, security, and the answers any may give. */
export type AccountRouteCommon = {
  common: { tags: string[]; security: Array<Record<string, never[]>> };
  errors: Record<400 | 401 | 503, typeof errorResponseSchema>;
};

const accountParams = z.object({ id: canonicalIdSchema.meta({ description: "the billing account" }) });
const debitBody = z.object({
  credits: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  reference: canonicalIdSchema,
  reason: storableFreeText(1024).meta({ description: "what the charge is for: a seat fee, a settlement" }),
});

/** Money moved by hand: manual debits (transfers and reversals to follow). */
export function walletRoutes(app: AccountApp, deps: Deps, { common, errors }: AccountRouteCommon): void {
  const { pool } = deps.database;
  const policy = { lowBalanceThresholds: deps.settings.lowBalanceThresholds, enforcement: deps.settings.enforcement };

  app.post(
    "/v1/accounts/:id/debits",
    {
      schema: {
        ...common,
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
        return sendError(reply, 409, "debit_reference_conflict", "this reference was used for another debit", {
          debit: { billing_account_id: result.debit.billingAccountId, credits: creditsJson(result.debit.credits) },
        });
      }
      if (result.outcome === "out_of_range") {
        return sendError(reply, 422, "balance_out_of_range", `credits: the balance would pass -${MAX_CREDITS} credits; nothing was debited`, {
          balance_credits: creditsJson(result.balanceCredits),
        });
      }
      if (result.outcome === "created") await deliverAlerts(pool, deps.logger, result.alerts);
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
}
