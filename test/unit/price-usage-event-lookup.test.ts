import { describe, expect, it } from "vitest";
import { candidateNames, priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import type { UsageEvent } from "../../src/usage/usage-event.js";
import { credits, expectPriced, usePriceBooks } from "../support/price-books.js";
import { usageEvent } from "../support/usage-events.js";

const { book } = usePriceBooks();

describe("priceUsageEvent", () => {
  describe("lookup order", () => {
    const LOOKUP_BOOK = `
credits_per_usd: 10000000
models:
  team-alias: {input_cost_per_token: 1e-6, output_cost_per_token: 0}
  gpt-4o: {input_cost_per_token: 2e-6, output_cost_per_token: 0}
  azure/gpt-4o: {input_cost_per_token: 4e-6, output_cost_per_token: 0}
  gpt-4o-2024-08-06: {input_cost_per_token: 3e-6, output_cost_per_token: 0}
`;
    const entryFor = (overrides: Partial<UsageEvent>) =>
      expectPriced(priceUsageEvent(usageEvent({ promptTokens: 1, ...overrides }), book(LOOKUP_BOOK))).priceEntry;

    it("model_group first", () => {
      expect(entryFor({ modelGroup: "team-alias", model: "openai/gpt-4o", modelMapKey: "gpt-4o-2024-08-06" })).toBe(
        "team-alias",
      );
      // 1 token × 1e-6 = 1e-6 USD = 10 credits
      expect(credits(book(LOOKUP_BOOK), { modelGroup: "team-alias", model: "gpt-4o", promptTokens: 1 })).toBe(10n);
    });

    it("model_group without its provider/ prefix comes before model", () => {
      expect(entryFor({ modelGroup: "proxy/team-alias", model: "gpt-4o" })).toBe("team-alias");
    });

    it("then model, also without provider/", () => {
      expect(entryFor({ modelGroup: "unknown-group", model: "gpt-4o", modelMapKey: "gpt-4o-2024-08-06" })).toBe("gpt-4o");
      expect(entryFor({ modelGroup: "unknown-group", model: "openai/gpt-4o", modelMapKey: "gpt-4o-2024-08-06" })).toBe(
        "gpt-4o",
      );
    });

    it("the full name wins over the name without provider/", () => {
      // 1 token × 4e-6 = 40 credits
      expect(entryFor({ model: "azure/gpt-4o" })).toBe("azure/gpt-4o");
      expect(credits(book(LOOKUP_BOOK), { model: "azure/gpt-4o", promptTokens: 1 })).toBe(40n);
    });

    it("then model_map_key, also without provider/", () => {
      expect(entryFor({ model: "my-deployment", modelMapKey: "gpt-4o-2024-08-06" })).toBe("gpt-4o-2024-08-06");
      expect(entryFor({ model: "my-deployment", modelMapKey: "openai/gpt-4o-2024-08-06" })).toBe("gpt-4o-2024-08-06");
    });

    it("finds a cost map key that includes the provider, and strips the provider for one that does not", () => {
      expect(
        expectPriced(priceUsageEvent(usageEvent({ model: "gemini/gemini-2.5-pro", promptTokens: 1 }), book())).priceEntry,
      ).toBe("gemini/gemini-2.5-pro");
      expect(
        expectPriced(
          priceUsageEvent(usageEvent({ model: "anthropic/claude-3-5-sonnet-20241022", promptTokens: 1 }), book()),
        ).priceEntry,
      ).toBe("claude-3-5-sonnet-20241022");
    });

    it("candidateNames: the price book by group, model, map key and provider/model; the cost map never by group", () => {
      expect(
        candidateNames(usageEvent({ modelGroup: "proxy/alias", model: "openrouter/openai/gpt-4o", modelMapKey: "gpt-4o" })),
      ).toEqual({
        price_book: ["proxy/alias", "alias", "openrouter/openai/gpt-4o", "openai/gpt-4o", "gpt-4o"],
        cost_map: ["gpt-4o", "openrouter/openai/gpt-4o", "openai/gpt-4o"],
      });
      expect(candidateNames(usageEvent({ modelGroup: "gpt-4", model: "gpt-4o-mini", modelMapKey: "gpt-4o-mini", provider: "azure" }))).toEqual({
        price_book: ["gpt-4", "gpt-4o-mini", "azure/gpt-4o-mini"],
        cost_map: ["azure/gpt-4o-mini", "gpt-4o-mini"],
      });
      // no empty names from a leading or trailing slash, no duplicates
      expect(candidateNames(usageEvent({ modelGroup: "/x", model: "y/", modelMapKey: "/x" }))).toEqual({ price_book: ["/x", "y/"], cost_map: ["/x", "y/"] });
      expect(candidateNames(usageEvent())).toEqual({ price_book: [], cost_map: [] });
    });
  });
});
