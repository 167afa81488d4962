import { toDecimalString } from "../pricing/decimal.js";
import type { Divergence } from "../pricing/price-usage-event.js";
import type { AlertFields } from "./alert-catalog.js";

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
