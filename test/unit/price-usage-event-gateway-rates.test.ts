import { describe, expect, it } from "vitest";
import { toDecimalString } from "../../src/pricing/decimal.js";
import { normalisedReportedCost, priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import { BASE_BOOK, credits, expectPriced, expectUnpriced, usePriceBooks } from "../support/price-books.js";
import { usageEvent } from "../support/usage-events.js";

const { book, bookError } = usePriceBooks();

describe("priceUsageEvent", () => {
  describe("the rates LiteLLM used (model_map_value) and every term", () => {
    const gpt4oRates = {
      input_cost_per_token: "0.0000025",
      output_cost_per_token: "0.00001",
      cache_read_input_token_cost: "0.00000125",
      input_cost_per_token_priority: "0.00000425",
      output_cost_per_token_priority: "0.000017",
      input_cost_per_token_flex: "0.00000125",
    };
    const noOverride = () => book(BASE_BOOK.replace(/models:\n.*\n$/, "models: {}\n"));

    it("are step (b): after the operator's entries, before the cost map; an alias never reaches the cost map", () => {
      const aliased = usageEvent({ modelGroup: "gpt-4o", model: "custom-deployment", gatewayRates: { input_cost_per_token: "0.000001", output_cost_per_token: "0.000002" }, promptTokens: 10_000, completionTokens: 2_000 });
      // with an operator entry for gpt-4o (the alias), that entry prices it
      expect(expectPriced(priceUsageEvent(aliased, book()))).toMatchObject({ rateStep: "price_book", priceEntry: "gpt-4o", chargedCredits: 450_000n });
      // without, the deployment's own price: 10,000 × 1e-6 + 2,000 × 2e-6 = 0.014
      expect(expectPriced(priceUsageEvent(aliased, noOverride()))).toMatchObject({ rateStep: "gateway", priceEntry: "model_map_value", chargedCredits: 140_000n });
      // neither: the cost map by the served model, never by the alias
      const unknownServed = usageEvent({ modelGroup: "gpt-4o", model: "custom-deployment", promptTokens: 1, reportedCostUsd: "0.5" });
      expect(expectPriced(priceUsageEvent(unknownServed, noOverride())).pricingSource).toBe("reported_cost");
    });

    it("rates that are all zero are not trusted as free: the cost map, else LiteLLM's figure, else quarantine", () => {
      const zero = { input_cost_per_token: "0", output_cost_per_token: "0" };
      expect(expectPriced(priceUsageEvent(usageEvent({ model: "gpt-4o", gatewayRates: zero, promptTokens: 1 }), noOverride())).rateStep).toBe("cost_map");
      expectUnpriced(priceUsageEvent(usageEvent({ model: "mystery", gatewayRates: zero, promptTokens: 1, reportedCostUsd: "0" }), noOverride()));
    });

    it("service tiers price at their own rates where the entry has them, else at the base rate", () => {
      const call = (serviceTier: string | null) =>
        expectPriced(priceUsageEvent(usageEvent({ model: "gpt-4o", serviceTier, gatewayRates: gpt4oRates, promptTokens: 1000, completionTokens: 200 }), noOverride()));
      // 1,000 × 4.25e-6 + 200 × 1.7e-5 = 0.00765
      expect(call("priority")).toMatchObject({ serviceTier: "priority", chargedCredits: 76_500n });
      // flex has an input rate only: 1,000 × 1.25e-6 + 200 × 1e-5 = 0.00325
      expect(call("flex")).toMatchObject({ serviceTier: "flex", chargedCredits: 32_500n });
      expect(call("default")).toMatchObject({ serviceTier: null, chargedCredits: 45_000n });
    });

    it("above a context threshold the context tier's rates win over the service tier's, as in LiteLLM", () => {
      const tiered = { ...gpt4oRates, input_cost_per_token_above_200k_tokens: "0.000006", output_cost_per_token_above_200k_tokens: "0.0000225" };
      const charge = expectPriced(
        priceUsageEvent(usageEvent({ model: "long", serviceTier: "priority", gatewayRates: tiered, promptTokens: 215_000, completionTokens: 800 }), noOverride()),
      );
      // 215,000 × 6e-6 + 800 × 2.25e-5 = 1.308: asking for priority never makes a long call cheaper
      expect(charge).toMatchObject({ contextTier: "above_200k_tokens", serviceTier: null, chargedCredits: 13_080_000n });
    });

    it("1-hour cache writes at their rate, else at the 5-minute rate; audio and web searches as their own terms", () => {
      const anthropic = { input_cost_per_token: "0.000003", output_cost_per_token: "0.000015", cache_creation_input_token_cost: "0.00000375", cache_creation_input_token_cost_above_1hr: "0.000006" };
      const write = (rates: Record<string, string>) =>
        expectPriced(priceUsageEvent(usageEvent({ model: "claude", gatewayRates: rates, promptTokens: 4050, cacheWriteTokens: 4000, cacheWrite1hTokens: 3000, completionTokens: 100 }), noOverride()));
      // 50 × 3e-6 + 1,000 × 3.75e-6 + 3,000 × 6e-6 + 100 × 1.5e-5 = 0.0234
      expect(write(anthropic).chargedCredits).toBe(234_000n);
      const { cache_creation_input_token_cost_above_1hr: _, ...without1h } = anthropic;
      // 50 × 3e-6 + 4,000 × 3.75e-6 + 100 × 1.5e-5 = 0.01665
      expect(write(without1h).chargedCredits).toBe(166_500n);

      const search = { ...anthropic, "search_context_cost_per_query.search_context_size_medium": "0.01", "search_context_cost_per_query.search_context_size_high": "0.03" };
      const searched = (searchContextSize: "high" | null, rates: Record<string, string>) =>
        expectPriced(priceUsageEvent(usageEvent({ model: "claude", gatewayRates: rates, webSearchRequests: 2, searchContextSize }), noOverride()));
      expect(searched(null, search).lines.at(-1)).toMatchObject({ tokenClass: "web_search", tokens: 2, rateField: "search_context_cost_per_query.search_context_size_medium" });
      expect(searched(null, search).chargedCredits).toBe(200_000n);
      expect(searched("high", search).chargedCredits).toBe(600_000n);
      // An entry without a search rate shows the term at 0 and says so.
      const unrated = expectPriced(priceUsageEvent(usageEvent({ model: "claude", gatewayRates: anthropic, promptTokens: 10, webSearchRequests: 2 }), noOverride()));
      expect(unrated.lines.at(-1)).toMatchObject({ tokenClass: "web_search", rateField: "search_context_cost_per_query.search_context_size_medium (not in the entry)" });
      // …and a call whose every term comes to 0 is not charged 0: it has no usable rates.
      expectUnpriced(priceUsageEvent(usageEvent({ model: "claude", gatewayRates: anthropic, webSearchRequests: 2 }), noOverride()));
    });

    it("a deployment LiteLLM prices per second, image or character is charged LiteLLM's figure, never the cost map's token rates", () => {
      const perSecond = usageEvent({ model: "gpt-4o", gatewayRates: { input_cost_per_token: "0" }, gatewayPricesOtherUnits: true, promptTokens: 10, completionTokens: 20, reportedCostUsd: "0.0008" });
      expect(expectPriced(priceUsageEvent(perSecond, noOverride()))).toMatchObject({ pricingSource: "reported_cost", chargedCredits: 8_000n });
      expectUnpriced(priceUsageEvent(usageEvent({ ...perSecond, reportedCostUsd: "0" }), noOverride()));
    });

    it("calls not priced by tokens (images, speech, transcription…) are charged LiteLLM's figure, normalised, with the reason", () => {
      const image = expectPriced(priceUsageEvent(usageEvent({ model: "gpt-4o", callType: "aimage_generation", gatewayRates: gpt4oRates, reportedCostUsd: "0.040000000000000001" }), book()));
      expect(image).toMatchObject({ pricingSource: "reported_cost", chargedCredits: 400_000n, reason: "a aimage_generation call is not priced by tokens: LiteLLM's reported cost" });
      expectUnpriced(priceUsageEvent(usageEvent({ model: "tts-1", callType: "speech", reportedCostUsd: null }), book()));
      // a paid image call LiteLLM says cost nothing is not trusted as free
      expectUnpriced(priceUsageEvent(usageEvent({ model: "gpt-image-1", callType: "aimage_generation", promptTokens: 4050, reportedCostUsd: "0" }), book()));
      expect(expectPriced(priceUsageEvent(usageEvent({ model: "gpt-4o", callType: "acreate_batch", reportedCostUsd: "0.0001125" }), book())).chargedCredits).toBe(1_125n);
    });

    it("LiteLLM's figure is read as the shortest round-trip decimal rounded to 15 significant digits", () => {
      expect(toDecimalString(normalisedReportedCost("0.00022500000000000002")!)).toBe("0.000225");
      expect(toDecimalString(normalisedReportedCost("0.0076500000000000005")!)).toBe("0.00765");
      expect(toDecimalString(normalisedReportedCost("0.123456789012345678")!)).toBe("0.123456789012346");
      expect(normalisedReportedCost(null)).toBeNull();
      // an unknown model's reported double never adds a credit
      expect(credits(book(), { model: "mystery", promptTokens: 1, reportedCostUsd: "0.00022500000000000002" })).toBe(2_250n);
    });

    it("a divergence of a credit or more is reported, and on_divergence decides what is charged", () => {
      const o3 = { input_cost_per_token: "0.0000011", output_cost_per_token: "0.0000044" };
      const event = usageEvent({ model: "o3-mini", gatewayRates: o3, promptTokens: 1500, completionTokens: 900, reasoningTokens: 700, reportedCostUsd: "0.00473" });
      const withPolicy = (policy: string) => book(`${BASE_BOOK.replace(/models:\n.*\n$/, "models: {}\n")}on_divergence: ${policy}\n`);
      const charged = expectPriced(priceUsageEvent(event, withPolicy("price_book")));
      expect(charged).toMatchObject({ chargedCredits: 56_100n, divergence: { step: "gateway", gatewayCredits: 56_100n, reportedCredits: 47_300n } });
      expect(expectPriced(priceUsageEvent(event, withPolicy("reported")))).toMatchObject({ pricingSource: "reported_cost", chargedCredits: 47_300n });
      expect(expectPriced(priceUsageEvent(event, withPolicy("higher")))).toMatchObject({ pricingSource: "price_book", chargedCredits: 56_100n });
      expect(priceUsageEvent(event, withPolicy("quarantine"))).toMatchObject({ priced: false, reason: "price_divergence" });
      // less than a credit apart is not a divergence
      const close = usageEvent({ ...event, reportedCostUsd: "0.00561000009" });
      expect(expectPriced(priceUsageEvent(close, withPolicy("quarantine"))).divergence).toBeNull();
      expect(bookError("credits_per_usd: 1\non_divergence: shrug\n").message).toContain("on_divergence");
      // exactly one credit apart is a divergence; markup counts
      expect(expectPriced(priceUsageEvent(usageEvent({ ...event, reportedCostUsd: "0.0056099" }), withPolicy("price_book"))).divergence).not.toBeNull();
      const marked = book(`${BASE_BOOK.replace(/models:\n.*\n$/, "models: {}\n").replace("markup: 1.0", "markup: 3")}`);
      // half a credit apart: no divergence at markup 1, one and a half at markup 3
      const halfCredit = usageEvent({ ...event, reportedCostUsd: "0.00560995" });
      expect(expectPriced(priceUsageEvent(halfCredit, withPolicy("price_book"))).divergence).toBeNull();
      expect(expectPriced(priceUsageEvent(halfCredit, marked)).divergence).not.toBeNull();
    });

    it("never acts on a divergence from an operator's own price, only reports it", () => {
      const event = usageEvent({ modelGroup: "my-o3", model: "o3-mini", gatewayRates: { input_cost_per_token: "0.0000011", output_cost_per_token: "0.0000044" }, promptTokens: 1500, completionTokens: 900, reasoningTokens: 700, reportedCostUsd: "0.00473" });
      const operator = book(`credits_per_usd: 10000000\non_divergence: reported\nmodels:\n  my-o3: {input_cost_per_token: 2e-6, output_cost_per_token: 8e-6}\n`);
      // 1,500 × 2e-6 + 900 × 8e-6 = 0.0102, whatever LiteLLM's figure; the gateway's rates still diverge from it
      expect(expectPriced(priceUsageEvent(event, operator))).toMatchObject({ rateStep: "price_book", chargedCredits: 102_000n, divergence: { gatewayCredits: 56_100n } });
    });
  });
});
