import { describe, expect, it } from "vitest";
import { decimal, toDecimalString, ZERO } from "../../src/pricing/decimal.js";
import { priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import { usageEventSchema } from "../../src/usage/usage-event.js";
import { BASE_BOOK, credits, expectPriced, expectUnpriced, unitemisedCharge, usePriceBooks } from "../support/price-books.js";
import { usageEvent } from "../support/usage-events.js";

const { book } = usePriceBooks();

describe("priceUsageEvent", () => {
  it("gpt-4o: 1 prompt + 1 completion token = 125 credits", () => {
    // 1 × 2.5e-6 + 1 × 1e-5 = 1.25e-5 USD; × 1e7 credits/USD = 125 credits
    const charge = expectPriced(priceUsageEvent(usageEvent({ model: "gpt-4o", promptTokens: 1, completionTokens: 1 }), book()));
    expect(charge).toEqual({
      pricingSource: "price_book",
      rateStep: "price_book",
      priceEntry: "gpt-4o",
      contextTier: null,
      serviceTier: null,
      reportedCostUsd: null,
      reason: null,
      divergence: null,
      lines: [
        { tokenClass: "uncached_prompt", tokens: 1, rateField: "input_cost_per_token", rateUsd: decimal("2.5e-6"), costUsd: decimal("2.5e-6") },
        { tokenClass: "cache_read", tokens: 0, rateField: "cache_read_input_token_cost", rateUsd: decimal("1.25e-6"), costUsd: ZERO },
        { tokenClass: "cache_write", tokens: 0, rateField: "input_cost_per_token", rateUsd: decimal("2.5e-6"), costUsd: ZERO },
        { tokenClass: "completion", tokens: 1, rateField: "output_cost_per_token", rateUsd: decimal("1e-5"), costUsd: decimal("1e-5") },
        { tokenClass: "reasoning", tokens: 0, rateField: "output_cost_per_token", rateUsd: decimal("1e-5"), costUsd: ZERO },
      ],
      providerCostUsd: decimal("0.0000125"),
      chargedCredits: 125n,
    });
  });

  it("gpt-4o: 3 prompt + 1 completion = 175 credits exactly (doubles would ceil 175.00000000000003 to 176)", () => {
    // 3 × 2.5e-6 + 1e-5 = 1.75e-5 USD → 175 credits
    expect(credits(book(), { model: "gpt-4o", promptTokens: 3, completionTokens: 1 })).toBe(175n);
  });

  it("ignores what LiteLLM reported when the price book has the model", () => {
    expect(credits(book(), { model: "gpt-4o", promptTokens: 1, completionTokens: 1, reportedCostUsd: "99" })).toBe(125n);
  });

  describe("free models", () => {
    const FREE = unitemisedCharge("free", ZERO, 0n);

    it("a name added beside a priced model does not make it free: 2M tokens of gpt-4o with model_map_key x:free", () => {
      // 1,000,000 × 2.5e-6 + 1,000,000 × 1e-5 = 12.5 USD = 125,000,000 credits
      const charge = expectPriced(
        priceUsageEvent(
          usageEvent({ model: "gpt-4o", modelMapKey: "x:free", promptTokens: 1_000_000, completionTokens: 1_000_000, reportedCostUsd: "0" }),
          book(),
        ),
      );
      expect(charge).toMatchObject({ pricingSource: "price_book", priceEntry: "gpt-4o", chargedCredits: 125_000_000n });
      // nor does a free name as model_map_key when an unpriced model served the call
      expect(expectUnpriced(priceUsageEvent(usageEvent({ model: "x", modelMapKey: "vendor/thing:free", promptTokens: 5 }), book()))).toContain(
        "not in the price book",
      );
    });

    it("an operator alias in model_group that matches a glob is not free when the served model is priced", () => {
      const charge = expectPriced(
        priceUsageEvent(
          usageEvent({ modelGroup: "test-free-model", model: "openai/gpt-4o", promptTokens: 1000, completionTokens: 1000, reportedCostUsd: "0" }),
          book(),
        ),
      );
      // 1,000 × 2.5e-6 + 1,000 × 1e-5 = 0.0125 USD = 125,000 credits
      expect(charge).toMatchObject({ pricingSource: "price_book", priceEntry: "gpt-4o", chargedCredits: 125_000n });
      // model_group alone never makes a call free
      expect(expectUnpriced(priceUsageEvent(usageEvent({ modelGroup: "x:free", promptTokens: 5 }), book()))).toContain("x:free");
    });

    it("a model_group naming a free cost-map entry neither prices nor frees a call another model served", () => {
      const priceBook = book();
      const charge = expectPriced(
        priceUsageEvent(
          usageEvent({ modelGroup: "openrouter/x-ai/grok-4-fast:free", model: "gpt-4o", promptTokens: 1_000_000, completionTokens: 1_000_000 }),
          priceBook,
        ),
      );
      expect(charge).toMatchObject({ pricingSource: "price_book", priceEntry: "gpt-4o", chargedCredits: 125_000_000n });
    });

    it("an alias that has its own price-book entry is free when it matches a glob", () => {
      const priceBook = book(`
credits_per_usd: 10000000
free_models: ["team-free"]
models:
  team-free: {input_cost_per_token: 1e-6, output_cost_per_token: 1e-6}
  gpt-4o: {input_cost_per_token: 2.5e-6, output_cost_per_token: 1.0e-5}
`);
      expect(priceUsageEvent(usageEvent({ modelGroup: "team-free", model: "gpt-4o", promptTokens: 1000 }), priceBook)).toEqual({
        priced: true,
        charge: FREE,
      });
    });

    it("a free served model costs 0 whatever LiteLLM reported and whatever the alias", () => {
      const charge = expectPriced(
        priceUsageEvent(
          usageEvent({
            modelGroup: "team-llama",
            model: "openrouter/meta-llama/llama-3:free",
            promptTokens: 1000,
            completionTokens: 1000,
            reportedCostUsd: "0.5",
          }),
          book(),
        ),
      );
      expect(charge).toEqual({ ...FREE, reportedCostUsd: decimal("0.5") });
    });

    it("model_map_key stands for the served model when model is absent, and free wins over a cache hit", () => {
      const viaMapKey = expectPriced(priceUsageEvent(usageEvent({ modelMapKey: "vendor/thing:free", promptTokens: 5 }), book()));
      expect(viaMapKey.pricingSource).toBe("free");
      const cacheHit = expectPriced(priceUsageEvent(usageEvent({ model: "a:free", cacheHit: true }), book()));
      expect(cacheHit.pricingSource).toBe("free");
    });

    it("globs are anchored and escape regex characters", () => {
      const priceBook = book(`
credits_per_usd: 10000000
free_models: ["*:free", "gpt-4o.mini", "model-?"]
`);
      expect(priceBook.isFreeModel("x:free")).toBe(true);
      expect(priceBook.isFreeModel("x:free-tier")).toBe(false);
      expect(priceBook.isFreeModel("gpt-4o.mini")).toBe(true);
      expect(priceBook.isFreeModel("gpt-4oXmini")).toBe(false);
      expect(priceBook.isFreeModel("model-a")).toBe(true);
      expect(priceBook.isFreeModel("model-ab")).toBe(false);
    });

    it("is free under unknown_models: quarantine too", () => {
      const priceBook = book("credits_per_usd: 1\nunknown_models: quarantine\nfree_models: ['*:free']\n");
      expect(expectPriced(priceUsageEvent(usageEvent({ model: "m:free", promptTokens: 3 }), priceBook)).pricingSource).toBe(
        "free",
      );
    });
  });

  describe("cache hits", () => {
    it("a cache hit costs 0, source cache_hit", () => {
      const charge = expectPriced(
        priceUsageEvent(
          usageEvent({ model: "gpt-4o", cacheHit: true, promptTokens: 100, completionTokens: 100, reportedCostUsd: "0.1" }),
          book(),
        ),
      );
      expect(charge).toEqual({ ...unitemisedCharge("cache_hit", ZERO, 0n), reportedCostUsd: decimal("0.1") });
    });

    it("a cache hit on an unknown model with no reported cost is still 0, not unpriced", () => {
      const outcome = priceUsageEvent(usageEvent({ model: "mystery", cacheHit: true, promptTokens: 7 }), book());
      expect(expectPriced(outcome).pricingSource).toBe("cache_hit");
    });
  });

  describe("unknown models", () => {
    it("charge LiteLLM's reported cost: ceil(reported × markup × credits_per_usd)", () => {
      // 0.00123456789 × 1 × 1e7 = 12,345.6789 → 12,346 credits
      const charge = expectPriced(
        priceUsageEvent(usageEvent({ model: "mystery-model", promptTokens: 5, reportedCostUsd: "0.00123456789" }), book()),
      );
      expect(charge).toEqual({
        ...unitemisedCharge("reported_cost", decimal("0.00123456789"), 12_346n),
        reportedCostUsd: decimal("0.00123456789"),
        reason: "mystery-model has no rates anywhere: LiteLLM's reported cost",
      });
    });

    it("reported cost null → unpriced, naming the model", () => {
      const message = expectUnpriced(
        priceUsageEvent(usageEvent({ modelGroup: "mystery-group", promptTokens: 5, reportedCostUsd: null }), book()),
      );
      expect(message).toContain("mystery-group");
    });

    it('reported "0" with tokens > 0 → unpriced (not trusted as free)', () => {
      expectUnpriced(priceUsageEvent(usageEvent({ model: "mystery", promptTokens: 1, reportedCostUsd: "0" }), book()));
      expectUnpriced(priceUsageEvent(usageEvent({ model: "mystery", completionTokens: 1, reportedCostUsd: "0.000" }), book()));
    });

    it('reported "0" with zero tokens → charged 0, source reported_cost', () => {
      const charge = expectPriced(priceUsageEvent(usageEvent({ model: "mystery", reportedCostUsd: "0" }), book()));
      expect(charge).toMatchObject({ ...unitemisedCharge("reported_cost", ZERO, 0n), reportedCostUsd: ZERO, reason: expect.any(String) });
    });

    it("unknown_models: quarantine → unpriced even with a reported cost; known models still priced", () => {
      const quarantine = book(BASE_BOOK.replace("unknown_models: reported_cost", "unknown_models: quarantine"));
      expect(quarantine.unknownModels).toBe("quarantine");
      const message = expectUnpriced(
        priceUsageEvent(usageEvent({ model: "mystery-model", promptTokens: 5, reportedCostUsd: "0.5" }), quarantine),
      );
      expect(message).toContain("mystery-model");
      expect(credits(quarantine, { model: "gpt-4o", promptTokens: 1, completionTokens: 1 })).toBe(125n);
    });

    it('an event with no model name at all is labelled "(no model)"', () => {
      expect(expectUnpriced(priceUsageEvent(usageEvent({ promptTokens: 1 }), book()))).toContain("(no model)");
    });
  });

  describe("markup and rounding: one ceil per event, after the markup", () => {
    it("reported cost 0.00000011 × 1.5 × 1e7 = 1.65 → 2 credits (a ceil before the markup would give ceil(1.1) × 1.5 → 3)", () => {
      const priceBook = book("credits_per_usd: 10000000\nmarkup: 1.5\n");
      const charge = expectPriced(priceUsageEvent(usageEvent({ model: "m", promptTokens: 1, reportedCostUsd: "0.00000011" }), priceBook));
      expect(charge.chargedCredits).toBe(2n);
      // the provider cost is kept before the markup
      expect(toDecimalString(charge.providerCostUsd)).toBe("0.00000011");
    });

    it("price book: 1 + 1 tokens at 1.1e-8 with markup 1.5 = 0.33 credits → 1 (per-class ceilings would give 2)", () => {
      // 2 × 1.1e-8 = 2.2e-8 USD × 1.5 = 3.3e-8 × 1e7 = 0.33 → 1 credit
      const priceBook = book(`
credits_per_usd: 10000000
markup: 1.5
models:
  tiny: {input_cost_per_token: 1.1e-8, output_cost_per_token: 1.1e-8}
`);
      const charge = expectPriced(priceUsageEvent(usageEvent({ model: "tiny", promptTokens: 1, completionTokens: 1 }), priceBook));
      expect(toDecimalString(charge.providerCostUsd)).toBe("0.000000022");
      expect(charge.chargedCredits).toBe(1n);
    });

    it("gpt-4o 1 + 1 with markup 1.5: 125 × 1.5 = 187.5 → 188", () => {
      const priceBook = book(BASE_BOOK.replace("markup: 1.0", "markup: 1.5"));
      expect(credits(priceBook, { model: "gpt-4o", promptTokens: 1, completionTokens: 1 })).toBe(188n);
    });

    it("token classes are summed before the ceil: 1 uncached + 1 cached read at 1e6 credits/USD = 3.75 → 4 (not 3 + 2)", () => {
      // 1 × 2.5e-6 + 1 × 1.25e-6 = 3.75e-6 USD × 1e6 = 3.75 → 4
      const priceBook = book(BASE_BOOK.replace("credits_per_usd: 10000000", "credits_per_usd: 1000000"));
      expect(credits(priceBook, { model: "gpt-4o", promptTokens: 2, cacheReadTokens: 1 })).toBe(4n);
    });

    it("markup 0 makes every call free of charge but keeps the provider cost", () => {
      const priceBook = book(BASE_BOOK.replace("markup: 1.0", "markup: 0"));
      const charge = expectPriced(priceUsageEvent(usageEvent({ model: "gpt-4o", promptTokens: 1, completionTokens: 1 }), priceBook));
      expect(charge.chargedCredits).toBe(0n);
      expect(toDecimalString(charge.providerCostUsd)).toBe("0.0000125");
    });

    it("a fractional credits_per_usd: 1 + 1 gpt-4o tokens at 2.5 credits/USD = 0.00003125 → 1", () => {
      const priceBook = book(BASE_BOOK.replace("credits_per_usd: 10000000", 'credits_per_usd: "2.5"'));
      expect(credits(priceBook, { model: "gpt-4o", promptTokens: 1, completionTokens: 1 })).toBe(1n);
    });
  });

  describe("usage pricing could turn negative", () => {
    // priceUsageEvent subtracts detail classes from totals, so the queue contract refuses any
    // event that would make them negative; an event that fails it never reaches pricing.
    it("the queue contract refuses usage that pricing could turn negative", () => {
      const refused = [
        usageEvent({ model: "gpt-4o", promptTokens: 0, cacheReadTokens: 10 }),
        usageEvent({ model: "gpt-4o", promptTokens: 5, cacheReadTokens: 3, cacheWriteTokens: 3 }),
        usageEvent({ model: "cheap-thinker", completionTokens: 0, reasoningTokens: 10 }),
        usageEvent({ model: "mystery", promptTokens: 1, reportedCostUsd: "-0.5" }),
        usageEvent({ model: "mystery", promptTokens: 1, reportedCostUsd: "1e-5" }),
      ];
      for (const event of refused) expect(usageEventSchema.safeParse(event).success).toBe(false);
      expect(usageEventSchema.safeParse(usageEvent({ promptTokens: 6, cacheReadTokens: 3, cacheWriteTokens: 3 })).success).toBe(true);
    });
  });
});
