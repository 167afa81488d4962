import { readFileSync } from "node:fs";
import { Command } from "commander";
import { parseCallbackBody } from "../litellm/callback-body.js";
import { normaliseCallbackItem } from "../litellm/normalise.js";
import { settingsOrExit } from "../platform/process.js";
import { toDecimalString } from "../pricing/decimal.js";
import { explainCredits, explainTerms } from "../pricing/explain-charge.js";
import { type CostMapIdentity, gatewayRates } from "../pricing/price-book.js";
import { candidateNames, type Divergence, type PricedLine, type PricingOutcome, priceUsageEvent } from "../pricing/price-usage-event.js";
import type { UsageEvent } from "../usage/usage-event.js";
import { act, EXIT_OK, EXIT_PROBLEM, type OutputOptions, priceBookOrExit, printer, usageError } from "./context.js";
import { terminalSafe } from "./output.js";

export const priceCommand = act(
  new Command("price")
    .description("explain what the price book charges for LiteLLM payloads: each rate step, the names tried, every term (exit 1 on an unpriced call or a divergence)")
    .argument("<payload.json>", "LiteLLM payloads: one JSON object, a JSON array, or ndjson"),
  async (file: string, flags: OutputOptions) => {
    const print = printer(flags);
    const { billingAccountFrom, ...settings } = settingsOrExit(["pricing", "payer"]);
    const book = priceBookOrExit(settings);
    // The operator's own file: no item limit.
    const body = parseCallbackBody(readFileSync(file, "utf8"), { maxItems: Number.POSITIVE_INFINITY });
    if (!body.ok) return usageError(`${file}: ${body.message}`);
    let problems = 0;
    type Explained =
      | { index: number; refused: string; issues: unknown[] }
      | { index: number; event: UsageEvent; namesTried: ReturnType<typeof candidateNames>; outcome: PricingOutcome };
    const explained = body.items.map((item, index): Explained => {
      const normalised = normaliseCallbackItem(item, { billingAccountFrom });
      if (!normalised.ok) {
        problems += 1;
        return { index, refused: normalised.rejected.reason, issues: normalised.rejected.issues };
      }
      const { event } = normalised;
      const outcome = priceUsageEvent(event, book);
      // A divergence from LiteLLM's own figure is a finding, charged or not.
      if (!outcome.priced || outcome.charge.divergence) problems += 1;
      return { index, event, namesTried: candidateNames(event), outcome };
    });
    const json = {
      price_book_hash: book.hash,
      cost_map: book.costMap,
      markup: toDecimalString(book.markup),
      credits_per_usd: toDecimalString(book.creditsPerUsd),
      items: explained,
    };
    print(
      JSON.parse(JSON.stringify(json, (_key, value) => (typeof value === "bigint" ? value.toString() : isDecimal(value) ? toDecimalString(value) : value))),
      [describeCostMap(book.costMap), ...explained.map(describePricing)].join("\n\n"),
    );
    return problems === 0 ? EXIT_OK : EXIT_PROBLEM;

    function describePricing(entry: Explained): string {
      if ("refused" in entry) return `item ${entry.index}: refused (${entry.refused}) ${terminalSafe(JSON.stringify(entry.issues))}`;
      const { event, outcome, namesTried } = entry;
      const names = (list: string[]) => list.map(terminalSafe).join(", ") || "(none)";
      const head = [
        `item ${entry.index}: ${terminalSafe(event.idempotencyKey)}`,
        `  (a) price book, names tried: ${names(namesTried.price_book)}`,
        `  (b) LiteLLM's rates for the call: ${gatewayRates(event.gatewayRates) ? "model_map_value" : event.gatewayRates ? "(model_map_value prices no tokens)" : "(none)"}`,
        `  (c) cost map, names tried: ${names(namesTried.cost_map)}`,
      ].join("\n");
      if (!outcome.priced) {
        const divergence = outcome.divergence ? `\n${describeDivergence(outcome.divergence)}` : "";
        return `${head}\n  not priced (${outcome.reason}): ${terminalSafe(outcome.message)}${divergence}`;
      }
      const charge = outcome.charge;
      const tiers = [charge.contextTier && `context tier ${charge.contextTier}`, charge.serviceTier && `service tier ${charge.serviceTier}`].filter(Boolean);
      const entryLine = charge.priceEntry
        ? `  answered by step ${charge.rateStep}: entry ${terminalSafe(charge.priceEntry)}${tiers.length ? `, ${tiers.join(", ")}` : ""}`
        : `  ${charge.pricingSource}${charge.reason ? `: ${terminalSafe(charge.reason)}` : ""}`;
      const reported = charge.reportedCostUsd === null ? "none" : `$${toDecimalString(charge.reportedCostUsd)}`;
      return [
        head,
        entryLine,
        ...describeLines(charge.lines),
        `  ${explainCredits(charge.providerCostUsd, charge.chargedCredits, book)}`,
        `  LiteLLM reported ${reported}${charge.divergence ? "" : ", no divergence"}`,
        ...(charge.divergence ? [describeDivergence(charge.divergence)] : []),
        ...(charge.priceEntry && charge.reason ? [`  charged: ${terminalSafe(charge.reason)}`] : []),
      ].join("\n");
    }

    function describeLines(lines: PricedLine[]): string[] {
      return explainTerms(lines).map(
        (term) => `  ${term.term.padEnd(16)} ${String(term.quantity).padStart(9)} × ${term.rateUsd} (${terminalSafe(term.rateField)}) = ${term.costUsd}`,
      );
    }

    function describeDivergence(divergence: Divergence): string {
      return [
        `  divergence: at the gateway's own rates (step ${divergence.step}, ${terminalSafe(divergence.entry)}) $${toDecimalString(divergence.gatewayCostUsd)} = ${divergence.gatewayCredits} credits; LiteLLM reported ${divergence.reportedCredits} credits`,
        ...describeLines(divergence.lines).map((line) => `  ${line}`),
      ].join("\n");
    }
  },
);

/** Which cost map step (c) reads: the book states its version and date; the count and sha256 are the file's. */
function describeCostMap(costMap: CostMapIdentity | null): string {
  if (costMap === null) return "cost map: none (the price book names no litellm_cost_map)";
  const stated = [costMap.version ?? "version unstated", costMap.date ?? "date unstated"].map(terminalSafe).join(", ");
  return `cost map: ${stated}; ${costMap.entries} entries, sha256 ${costMap.sha256}\n  ${terminalSafe(costMap.path)}`;
}

function isDecimal(value: unknown): value is { coefficient: bigint; scale: number } {
  return typeof value === "object" && value !== null && "coefficient" in value && "scale" in value;
}
