import { describe, expect, it } from "vitest";
import { toDecimalString } from "../../src/pricing/decimal.js";
import { priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import { credits, expectPriced, usePriceBooks } from "../support/price-books.js";
import { usageEvent } from "../support/usage-events.js";

const { book } = usePriceBooks();

describe("priceUsageEvent", () => {
  describe("cache reads and writes", () => {
    it("anthropic from the cost map: reads at cache_read, writes at cache_creation", () => {
      // uncached 10,000 − 6,000 − 2,000 = 2,000 × 3e-6    = 0.006
      // cached reads          6,000 × 3e-7              = 0.0018
      // cache writes          2,000 × 3.75e-6           = 0.0075
      // completion              500 × 1.5e-5            = 0.0075
      // total 0.0228 USD × 1e7 = 228,000 credits
      const charge = expectPriced(
        priceUsageEvent(
          usageEvent({
            model: "anthropic/claude-3-5-sonnet-20241022",
            promptTokens: 10_000,
            cacheReadTokens: 6_000,
            cacheWriteTokens: 2_000,
            completionTokens: 500,
          }),
          book(),
        ),
      );
      expect(toDecimalString(charge.providerCostUsd)).toBe("0.0228");
      expect(charge.chargedCredits).toBe(228_000n);
    });

    it("gpt-4o: cached reads at 1.25e-6", () => {
      // 600 × 2.5e-6 + 400 × 1.25e-6 + 200 × 1e-5 = 0.0015 + 0.0005 + 0.002 = 0.004 USD = 40,000 credits
      expect(credits(book(), { model: "gpt-4o", promptTokens: 1000, cacheReadTokens: 400, completionTokens: 200 })).toBe(
        40_000n,
      );
    });

    it("cache writes default to the input rate when the entry has no cache_creation rate", () => {
      // operator gpt-4o has no cache_creation rate: 700 × 2.5e-6 + 300 × 2.5e-6 = 0.0025 USD = 25,000 credits
      expect(credits(book(), { model: "gpt-4o", promptTokens: 1000, cacheWriteTokens: 300 })).toBe(25_000n);
    });

    it("both default to the input rate when the entry lacks them", () => {
      // plain-model: all 100 prompt tokens at 1e-6 = 1e-4, 10 completion × 2e-6 = 2e-5 → 1.2e-4 USD = 1,200 credits
      // (were cached tokens free it would be 700)
      expect(
        credits(book(), { model: "plain-model", promptTokens: 100, cacheReadTokens: 30, cacheWriteTokens: 20, completionTokens: 10 }),
      ).toBe(1_200n);
    });

    it("the operator entry replaces the cost map's, so the cost map's cache_creation rate is not used", () => {
      // operator gpt-4o: 1,000 cache writes at its input rate 2.5e-6 = 0.0025 USD = 25,000 credits
      // (the cost map's cache_creation 1e-6 would give 10,000; its input 5e-6 would give 50,000)
      expect(credits(book(), { model: "gpt-4o", promptTokens: 1000, cacheWriteTokens: 1000 })).toBe(25_000n);
      // and the cost map's gpt-4o entry alone prices it differently: 1,000 × 1e-6 = 10,000 credits
      const costMapOnly = book("credits_per_usd: 10000000\nlitellm_cost_map: cost-map.json\n");
      expect(credits(costMapOnly, { model: "gpt-4o", promptTokens: 1000, cacheWriteTokens: 1000 })).toBe(10_000n);
      expect(costMapOnly.models.get("gpt-4o")?.origin).toBe("litellm_cost_map");
    });

    it("an output-only cost map entry prices prompt tokens at 0", () => {
      // 1,000 × 0 + 10 × 2e-6 = 2e-5 USD = 200 credits
      expect(credits(book(), { model: "output-only", promptTokens: 1000, completionTokens: 10 })).toBe(200n);
    });
  });

  describe("reasoning tokens", () => {
    it("are priced at output_cost_per_reasoning_token when the entry has it", () => {
      // 10 × 1e-6 + (100 − 40) × 2e-6 + 40 × 5e-6 = 1e-5 + 1.2e-4 + 2e-4 = 3.3e-4 USD = 3,300 credits
      expect(credits(book(), { model: "reasoner-x", promptTokens: 10, completionTokens: 100, reasoningTokens: 40 })).toBe(
        3_300n,
      );
    });

    it("are priced at the output rate otherwise", () => {
      // 10 × 1e-6 + 100 × 2e-6 = 2.1e-4 USD = 2,100 credits, with or without reasoning detail
      expect(credits(book(), { model: "plain-model", promptTokens: 10, completionTokens: 100, reasoningTokens: 40 })).toBe(
        2_100n,
      );
      expect(credits(book(), { model: "plain-model", promptTokens: 10, completionTokens: 100 })).toBe(2_100n);
    });
  });

  describe("context tiers", () => {
    const gemini25 = { model: "gemini/gemini-2.5-pro", cacheReadTokens: 100_000, cacheWriteTokens: 50_000, completionTokens: 1_000 };

    it("promptTokens 200,001 prices the whole call at the *_above_200k_tokens rates, cache rates included", () => {
      // uncached 200,001 − 150,000 = 50,001 × 2.5e-6   = 0.1250025
      // cached reads              100,000 × 6.25e-7    = 0.0625
      // cache writes               50,000 × 4e-6       = 0.2
      // completion                  1,000 × 1.5e-5     = 0.015
      // total 0.4025025 USD × 1e7 = 4,025,025 credits
      const charge = expectPriced(priceUsageEvent(usageEvent({ ...gemini25, promptTokens: 200_001 }), book()));
      expect(toDecimalString(charge.providerCostUsd)).toBe("0.4025025");
      expect(charge.chargedCredits).toBe(4_025_025n);
    });

    it("promptTokens exactly 200,000 stays on the base rates", () => {
      // 50,000 × 1.25e-6 + 100,000 × 3.125e-7 + 50,000 × 2e-6 + 1,000 × 1e-5
      // = 0.0625 + 0.03125 + 0.1 + 0.01 = 0.20375 USD = 2,037,500 credits
      expect(credits(book(), { ...gemini25, promptTokens: 200_000 })).toBe(2_037_500n);
    });

    it("a model with only a 200k tier uses base rates at 150,000", () => {
      // 150,000 × 1.25e-6 = 0.1875 USD = 1,875,000 credits
      expect(credits(book(), { model: "gemini/gemini-2.5-pro", promptTokens: 150_000 })).toBe(1_875_000n);
    });

    it("the 128k tier: 128,001 uses *_above_128k_tokens, and cache writes default to the tier's input rate", () => {
      // 128,000 uncached × 2.5e-6 = 0.32; 1 cache write × 2.5e-6 (tier input) = 0.0000025; 10 × 1e-5 = 0.0001
      // total 0.3201025 USD = 3,201,025 credits
      // (a cache write at the base input 1.25e-6 would give 0.32010125 → 3,201,012.5 → 3,201,013)
      expect(
        credits(book(), { model: "gemini/gemini-1.5-pro", promptTokens: 128_001, cacheWriteTokens: 1, completionTokens: 10 }),
      ).toBe(3_201_025n);
    });

    it("the 128k tier: exactly 128,000 stays on the base rates", () => {
      // 128,000 × 1.25e-6 = 0.16; 10 × 5e-6 = 0.00005 → 0.16005 USD = 1,600,500 credits
      expect(
        credits(book(), { model: "gemini/gemini-1.5-pro", promptTokens: 128_000, cacheWriteTokens: 1, completionTokens: 10 }),
      ).toBe(1_600_500n);
    });

    it("with both tiers, the highest threshold exceeded applies", () => {
      // 100,000 × 1e-6 = 0.1 → 1,000,000; 150,000 × 2e-6 = 0.3 → 3,000,000; 250,000 × 3e-6 = 0.75 → 7,500,000
      expect(credits(book(), { model: "both-tiers", promptTokens: 100_000 })).toBe(1_000_000n);
      expect(credits(book(), { model: "both-tiers", promptTokens: 150_000 })).toBe(3_000_000n);
      expect(credits(book(), { model: "both-tiers", promptTokens: 250_000 })).toBe(7_500_000n);
      // 200,000 is not above 200k: 128k tier, 200,000 × 2e-6 = 0.4 → 4,000,000
      expect(credits(book(), { model: "both-tiers", promptTokens: 200_000 })).toBe(4_000_000n);
    });

    it("an operator entry's tier rates apply too", () => {
      const priceBook = book(`
credits_per_usd: 10000000
models:
  long: {input_cost_per_token: 1e-6, output_cost_per_token: 2e-6, input_cost_per_token_above_200k_tokens: 2e-6, output_cost_per_token_above_200k_tokens: 4e-6}
`);
      // 200,001 × 2e-6 + 1 × 4e-6 = 0.400002 + 0.000004 = 0.400006 USD = 4,000,060 credits
      expect(credits(priceBook, { model: "long", promptTokens: 200_001, completionTokens: 1 })).toBe(4_000_060n);
    });
  });
});
