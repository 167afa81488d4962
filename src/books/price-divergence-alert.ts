import { toDecimalString } from "../pricing/decimal.js";
import type { Divergence } from "../pricing/price-usage-event.js";
import type { UsageEvent } from "../usage/usage-event.js";
import type { Alert, AlertFields } from "./alert-catalog.js";

/**
 * `inv_price_divergence` for a call whose rates and LiteLLM's own figure disagree by a credit or
 * more: charged (with what it was charged), or held in quarantine (charged nothing yet).
 */
export function priceDivergenceAlert(
  event: Pick<UsageEvent, "billingAccountId" | "model">,
  idempotencyKey: string | null,
  chargedCredits: bigint | null,
  divergence: Divergence,
): Alert {
  return {
    event: "inv_price_divergence",
    fields: {
      idempotency_key: idempotencyKey,
      billing_account_id: event.billingAccountId,
      model: event.model,
      charged_credits: chargedCredits === null ? null : Number(chargedCredits),
      ...priceDivergenceFields(divergence),
    },
  };
}

/** What `inv_price_divergence` says of a divergence: both figures, the rate step, the entry and the terms. */
export function priceDivergenceFields(divergence: Divergence): AlertFields {
  return {
    reported_credits: Number(divergence.reportedCredits),
    gateway_credits: Number(divergence.gatewayCredits),
    rate_step: divergence.step,
    entry: divergence.entry,
    terms: divergence.lines
      .filter((line) => line.tokens > 0)
      .map((line) => ({
        term: line.tokenClass,
        quantity: line.tokens,
        rate_field: line.rateField,
        rate_usd: toDecimalString(line.rateUsd),
        cost_usd: toDecimalString(line.costUsd),
      })),
  };
}
