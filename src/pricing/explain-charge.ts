import { type Decimal, toDecimalString } from "./decimal.js";
import type { PriceBook } from "./price-book.js";
import type { PricedLine } from "./price-usage-event.js";

/** One term of a price as `ops price` and the console's receipt page show it: quantity × rate = cost. */
export type ExplainedTerm = { term: string; quantity: number; rateUsd: string; rateField: string; costUsd: string };

export function explainTerms(lines: readonly PricedLine[]): ExplainedTerm[] {
  return lines.map((line) => ({
    term: line.tokenClass,
    quantity: line.tokens,
    rateUsd: toDecimalString(line.rateUsd),
    rateField: line.rateField,
    costUsd: toDecimalString(line.costUsd),
  }));
}

/** The last step of every price: the cost in USD to credits, rounded up. */
export function explainCredits(providerCostUsd: Decimal, chargedCredits: bigint, book: Pick<PriceBook, "markup" | "creditsPerUsd">): string {
  return `cost $${toDecimalString(providerCostUsd)} × markup ${toDecimalString(book.markup)} × ${toDecimalString(book.creditsPerUsd)} credits/USD → ${chargedCredits} credits (rounded up)`;
}
