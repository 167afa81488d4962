import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Decimal, decimal, toDecimalString, ZERO } from "../../src/pricing/decimal.js";
import { type PriceBook, PriceBookError, parsePriceBook } from "../../src/pricing/price-book.js";
import {
  candidateNames,
  normalisedReportedCost,
  type PricingOutcome,
  priceUsageEvent,
} from "../../src/pricing/price-usage-event.js";
import { type UsageEvent, usageEventSchema } from "../../src/usage/usage-event.js";
import { usageEvent } from "../support/usage-events.js";
import { seededRandom } from "../support/random.js";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------


type PricedOutcome = Extract<PricingOutcome, { priced: true }>;

function expectPriced(outcome: PricingOutcome): PricedOutcome["charge"] {
  if (!outcome.priced) throw new Error(`expected a charge, got unpriced: ${outcome.message}`);
  return outcome.charge;
}

function expectUnpriced(outcome: PricingOutcome): string {
  if (outcome.priced) throw new Error(`expected unpriced, got ${JSON.stringify(outcome.charge, bigintJson)}`);
  expect(outcome.reason).toBe("unpriced_model");
  return outcome.message;
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? `${value}n` : value;
}

/** The charged credits of a call that must be priced. */
function credits(book: PriceBook, overrides: Partial<UsageEvent>): bigint {
  return expectPriced(priceUsageEvent(usageEvent(overrides), book)).chargedCredits;
}

let workDir: string;

// A small stand-in for LiteLLM's model_prices_and_context_window.json.
const COST_MAP = {
  sample_spec: {
    // If this entry were read as a model, the string rate would make the price book fail.
    input_cost_per_token: "set to 0.0 if the model is free; USD per token",
    output_cost_per_token: 0.0,
    litellm_provider: "one of https://docs.litellm.ai/docs/providers",
    mode: "one of: chat, embedding, completion, image_generation, audio_transcription",
  },
  "claude-3-5-sonnet-20241022": {
    input_cost_per_token: 3e-6,
    output_cost_per_token: 1.5e-5,
    cache_read_input_token_cost: 3e-7,
    cache_creation_input_token_cost: 3.75e-6,
    litellm_provider: "anthropic",
    mode: "chat",
  },
  // gemini-like, with a 200k context tier (cache creation rates are invented for the test).
  "gemini/gemini-2.5-pro": {
    input_cost_per_token: 1.25e-6,
    input_cost_per_token_above_200k_tokens: 2.5e-6,
    output_cost_per_token: 1e-5,
    output_cost_per_token_above_200k_tokens: 1.5e-5,
    cache_read_input_token_cost: 3.125e-7,
    cache_read_input_token_cost_above_200k_tokens: 6.25e-7,
    cache_creation_input_token_cost: 2e-6,
    cache_creation_input_token_cost_above_200k_tokens: 4e-6,
    litellm_provider: "gemini",
    mode: "chat",
  },
  // gemini-1.5-like, with a 128k tier and no cache rates.
  "gemini/gemini-1.5-pro": {
    input_cost_per_token: 1.25e-6,
    input_cost_per_token_above_128k_tokens: 2.5e-6,
    output_cost_per_token: 5e-6,
    output_cost_per_token_above_128k_tokens: 1e-5,
    litellm_provider: "gemini",
    mode: "chat",
  },
  "both-tiers": {
    input_cost_per_token: 1e-6,
    input_cost_per_token_above_128k_tokens: 2e-6,
    input_cost_per_token_above_200k_tokens: 3e-6,
    output_cost_per_token: 1e-6,
  },
  "plain-model": { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6, cache_read_input_token_cost: null },
  "reasoner-x": { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6, output_cost_per_reasoning_token: 5e-6 },
  "output-only": { output_cost_per_token: 2e-6 },
  // A free model's entry whose name a caller can pick as model_group on a wildcard route.
  "openrouter/x-ai/grok-4-fast:free": { input_cost_per_token: 0, output_cost_per_token: 0 },
  // Priced per image: cannot price tokens, so not an entry.
  "dall-e-3": { output_cost_per_image: 0.04, input_cost_per_pixel: 1e-8, litellm_provider: "openai", mode: "image_generation" },
  // The operator's `models:` entry below replaces this one whole.
  "gpt-4o": {
    input_cost_per_token: 5e-6,
    output_cost_per_token: 2e-5,
    cache_read_input_token_cost: 2.5e-7,
    cache_creation_input_token_cost: 1e-6,
    litellm_provider: "openai",
    mode: "chat",
  },
};

/** The shipped config/pricing.yaml, pointed at the temp cost map. */
const BASE_BOOK = `
credits_per_usd: 10000000        # 1 credit = $0.0000001
markup: 1.0
unknown_models: reported_cost
free_models: ["*:free", "test-free-model"]
litellm_cost_map: cost-map.json
models:
  gpt-4o: {input_cost_per_token: 2.5e-6, output_cost_per_token: 1.0e-5, cache_read_input_token_cost: 1.25e-6}
`;

/** A charge with no terms, as free, cache hits and reported costs are. */
function unitemisedCharge(pricingSource: string, providerCostUsd: Decimal, chargedCredits: bigint) {
  return {
    pricingSource,
    rateStep: null,
    priceEntry: null,
    contextTier: null,
    serviceTier: null,
    lines: [],
    providerCostUsd,
    chargedCredits,
    reportedCostUsd: null,
    reason: null,
    divergence: null,
  };
}

function book(yaml: string = BASE_BOOK): PriceBook {
  return parsePriceBook(yaml, { baseDirectory: workDir });
}

function bookError(yaml: string): PriceBookError {
  try {
    book(yaml);
  } catch (error) {
    expect(error).toBeInstanceOf(PriceBookError);
    return error as PriceBookError;
  }
  throw new Error("expected the price book to be refused");
}

beforeAll(() => {
  workDir = mkdtempSync(join(tmpdir(), "price-usage-event-"));
  writeFileSync(join(workDir, "cost-map.json"), JSON.stringify(COST_MAP, null, 2));
});

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Price book loading
// ---------------------------------------------------------------------------------------------

describe("parsePriceBook", () => {
  it("reads the cost map, skipping sample_spec and entries that cannot price tokens", () => {
    const priceBook = book();
    expect(priceBook.models.has("sample_spec")).toBe(false);
    expect(priceBook.models.has("dall-e-3")).toBe(false);
    expect(priceBook.models.get("claude-3-5-sonnet-20241022")?.origin).toBe("litellm_cost_map");
    expect(priceBook.models.get("claude-3-5-sonnet-20241022")?.rates.cache_creation_input_token_cost).toEqual(
      decimal("3.75e-6"),
    );
    // An entry with only an output rate gets input 0; a null rate is absent.
    expect(priceBook.models.get("output-only")?.rates.input_cost_per_token).toEqual(ZERO);
    expect(priceBook.models.get("plain-model")?.rates.cache_read_input_token_cost).toBeUndefined();
    expect(priceBook.creditsPerUsd).toEqual(decimal("10000000"));
    expect(priceBook.markup).toEqual(decimal("1"));
    expect(priceBook.unknownModels).toBe("reported_cost");
    expect(priceBook.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("lets an operator entry replace the cost map entry whole", () => {
    const entry = book().models.get("gpt-4o");
    expect(entry?.origin).toBe("price_book");
    expect(entry?.rates.input_cost_per_token).toEqual(decimal("2.5e-6"));
    // the cost map's cache_creation rate is not merged in
    expect(entry?.rates.cache_creation_input_token_cost).toBeUndefined();
  });

  it("applies defaults: markup 1, unknown_models reported_cost, no free models, no cost map", () => {
    const priceBook = book("credits_per_usd: 100\n");
    expect(priceBook.markup).toEqual(decimal("1"));
    expect(priceBook.unknownModels).toBe("reported_cost");
    expect(priceBook.freeModelPatterns).toEqual([]);
    expect(priceBook.models.size).toBe(0);
  });

  it("accepts decimal strings for rates that need more digits than a double holds", () => {
    const priceBook = book(`
credits_per_usd: "10000000"
markup: "1.000000000000000000001"
models:
  precise: {input_cost_per_token: "0.00000123456789012345678901", output_cost_per_token: "1e-5"}
`);
    expect(toDecimalString(priceBook.models.get("precise")!.rates.input_cost_per_token!)).toBe(
      "0.00000123456789012345678901",
    );
    expect(toDecimalString(priceBook.markup)).toBe("1.000000000000000000001");
  });

  it("changes the hash when the cost map text changes", () => {
    const first = book().hash;
    const otherDir = mkdtempSync(join(tmpdir(), "price-usage-event-other-"));
    try {
      writeFileSync(join(otherDir, "cost-map.json"), JSON.stringify({ ...COST_MAP, extra: { input_cost_per_token: 1 } }));
      expect(parsePriceBook(BASE_BOOK, { baseDirectory: otherDir }).hash).not.toBe(first);
      expect(book().hash).toBe(first);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  describe("errors", () => {
    it("a string rate that is not a number names the model and the field", () => {
      const error = bookError(`
credits_per_usd: 10000000
models:
  bad-model: {input_cost_per_token: "abc", output_cost_per_token: 1e-5}
`);
      expect(error.message).toContain("bad-model");
      expect(error.message).toContain("input_cost_per_token");
      expect(error.message).toContain('"abc"');
    });

    it("a negative rate names the model and the field", () => {
      const error = bookError(`
credits_per_usd: 10000000
models:
  neg-model: {input_cost_per_token: 1e-6, output_cost_per_token: -1e-5}
`);
      expect(error.message).toContain("neg-model");
      expect(error.message).toContain("output_cost_per_token");
      expect(error.message).toMatch(/negative/);
    });

    it("a boolean rate names the model and the field", () => {
      const error = bookError(`
credits_per_usd: 10000000
models:
  bool-model: {input_cost_per_token: 1e-6, output_cost_per_token: 1e-5, cache_read_input_token_cost: true}
`);
      expect(error.message).toContain("bool-model");
      expect(error.message).toContain("cache_read_input_token_cost");
      expect(error.message).toContain("boolean");
    });

    it("a malformed tier rate is refused too", () => {
      const error = bookError(`
credits_per_usd: 10000000
models:
  tier-model: {input_cost_per_token: 1e-6, output_cost_per_token: 1e-5, input_cost_per_token_above_200k_tokens: "x"}
`);
      expect(error.message).toContain("tier-model");
      expect(error.message).toContain("input_cost_per_token_above_200k_tokens");
    });

    it("a malformed rate in the cost map names the model and the field", () => {
      const dir = mkdtempSync(join(tmpdir(), "price-usage-event-bad-"));
      try {
        writeFileSync(
          join(dir, "cost-map.json"),
          JSON.stringify({ "broken-model": { input_cost_per_token: 1e-6, output_cost_per_token: "lots" } }),
        );
        const error = (() => {
          try {
            parsePriceBook("credits_per_usd: 1\nlitellm_cost_map: cost-map.json\n", { baseDirectory: dir });
          } catch (caught) {
            return caught as Error;
          }
          throw new Error("expected the price book to be refused");
        })();
        expect(error).toBeInstanceOf(PriceBookError);
        expect(error.message).toContain("broken-model");
        expect(error.message).toContain("output_cost_per_token");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("an operator entry without output_cost_per_token is an error", () => {
      const error = bookError(`
credits_per_usd: 10000000
models:
  half-model: {input_cost_per_token: 1e-6}
`);
      expect(error.message).toContain("half-model");
      expect(error.message).toContain("output_cost_per_token");
      expect(error.message).toMatch(/required/);
    });

    it("an operator entry without input_cost_per_token, or an empty one, is an error", () => {
      expect(bookError("credits_per_usd: 1\nmodels:\n  m: {output_cost_per_token: 1e-6}\n").message).toContain(
        "input_cost_per_token",
      );
      expect(bookError("credits_per_usd: 1\nmodels:\n  m:\n").message).toMatch(/model m field input_cost_per_token/);
    });

    it.each(["0", "0.0", "-1", '"abc"', ".nan", ".inf"])("credits_per_usd %s is an error", (value) => {
      expect(bookError(`credits_per_usd: ${value}\n`).message).toContain("credits_per_usd");
    });

    it("a missing credits_per_usd is an error", () => {
      expect(bookError("markup: 1\n").message).toContain("credits_per_usd");
    });

    it("a negative markup is an error; markup 0 is allowed", () => {
      expect(bookError("credits_per_usd: 1\nmarkup: -0.5\n").message).toContain("markup");
      expect(book("credits_per_usd: 1\nmarkup: 0\n").markup).toEqual(ZERO);
    });

    it("an unknown unknown_models policy, invalid YAML and a missing cost map are errors", () => {
      expect(bookError("credits_per_usd: 1\nunknown_models: charge_anyway\n").message).toContain("unknown_models");
      expect(bookError("credits_per_usd: [1\n").message).toMatch(/YAML/);
      expect(bookError("credits_per_usd: 1\nlitellm_cost_map: nowhere.json\n").message).toMatch(/cannot read/);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Pricing rules
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Property test against an independent bigint-rational reference
// ---------------------------------------------------------------------------------------------


/** An exact decimal of the reference: mantissa / 10^exp10, kept independent of src/pricing/decimal.ts. */
type Exact = { m: bigint; k: number };
/** A non-negative rational n / d with d > 0. */
type Rational = { n: bigint; d: bigint };

const pow10 = (k: number): bigint => 10n ** BigInt(k);
const exactAdd = (a: Exact, b: Exact): Exact => {
  const k = Math.max(a.k, b.k);
  return { m: a.m * pow10(k - a.k) + b.m * pow10(k - b.k), k };
};
const toRational = (value: Exact): Rational => ({ n: value.m, d: pow10(value.k) });
const gcd = (a: bigint, b: bigint): bigint => {
  let [x, y] = [a < 0n ? -a : a, b];
  while (y !== 0n) [x, y] = [y, x % y];
  return x;
};
const reduced = (n: bigint, d: bigint): Rational => {
  const g = gcd(n, d);
  return g === 0n ? { n: 0n, d: 1n } : { n: n / g, d: d / g };
};
const ratAdd = (a: Rational, b: Rational): Rational => reduced(a.n * b.d + b.n * a.d, a.d * b.d);
const ratMul = (a: Rational, b: Rational): Rational => reduced(a.n * b.n, a.d * b.d);
const ratCeil = (r: Rational): bigint => {
  if (r.n < 0n) throw new Error("reference only handles non-negative values");
  return (r.n + r.d - 1n) / r.d;
};

/** Several spellings of one exact decimal, all naming the same value. */
function spell(value: Exact, rng: () => number): string {
  if (value.m === 0n) return ["0", "0.0", "0e-5"][Math.floor(rng() * 3)]!;
  const digits = value.m.toString();
  const leadExponent = digits.length - 1 - value.k; // value = d.ddd × 10^leadExponent
  const form = Math.floor(rng() * 4);
  if (form === 0) {
    // scientific, one digit before the point
    return `${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ""}e${leadExponent}`;
  }
  if (form === 1) {
    // whole-number mantissa with an exponent
    return `${digits}e${-value.k}`;
  }
  // plain, possibly with trailing zeros
  const padded = digits.padStart(value.k + 1, "0");
  const whole = padded.slice(0, padded.length - value.k);
  const fraction = padded.slice(padded.length - value.k) + (form === 3 ? "000" : "");
  return fraction ? `${whole}.${fraction}` : whole;
}

describe("property: chargedCredits equals an independent exact reference", () => {
  const CASES = 2000;
  const SEED = 0x5eed1234;

  type Level = { in: Exact; out: Exact; cr?: Exact; cw?: Exact };
  type Entry = {
    base: Level;
    reasoning?: Exact;
    tier128?: Level;
    tier200?: Level;
    cacheWrite1h?: Exact;
    audioIn?: Exact;
    audioOut?: Exact;
    searchMedium?: Exact;
  };

  function randomRate(rng: () => number): Exact {
    if (rng() < 0.05) return { m: 0n, k: 0 };
    const significant = 1 + Math.floor(rng() * 12);
    let digits = String(1 + Math.floor(rng() * 9));
    for (let i = 1; i < significant; i += 1) digits += String(Math.floor(rng() * 10));
    const leadExponent = -12 + Math.floor(rng() * 10); // -12 .. -3
    return { m: BigInt(digits), k: significant - 1 - leadExponent };
  }

  const int = (rng: () => number, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

  /**
   * A class's rate at a level, following the contract: tier rate, else base rate, else (cache) the
   * level's input. A tier applies where it prices input or output above 0, and a tier's rate of 0
   * is no rate (the cost map writes 0 for tiers a model does not have).
   */
  function classRates(entry: Entry, promptTokens: number) {
    const prices = (level: Level | undefined) => (level !== undefined && (level.in.m > 0n || level.out.m > 0n) ? level : undefined);
    const tier =
      promptTokens > 200_000 && prices(entry.tier200) ? entry.tier200 : promptTokens > 128_000 && prices(entry.tier128) ? entry.tier128 : undefined;
    const above = (rate: Exact | undefined) => (rate !== undefined && rate.m > 0n ? rate : undefined);
    const input = above(tier?.in) ?? entry.base.in;
    const output = above(tier?.out) ?? entry.base.out;
    return {
      input,
      output,
      cacheRead: above(tier?.cr) ?? entry.base.cr ?? input,
      cacheWrite: above(tier?.cw) ?? entry.base.cw ?? input,
      reasoning: entry.reasoning ?? output,
    };
  }

  /** The terms the contract adds: each at its own rate, else the rate of what it is a kind of. */
  function extraRates(entry: Entry, promptTokens: number) {
    const r = classRates(entry, promptTokens);
    return {
      cacheWrite1h: entry.cacheWrite1h ?? r.cacheWrite,
      audioIn: entry.audioIn ?? r.input,
      audioOut: entry.audioOut ?? r.output,
      search: entry.searchMedium ?? { m: 0n, k: 0 },
    };
  }

  /** A higher tier whose every effective rate is ≥ the lower level's, so crossing a threshold never lowers a charge. */
  function higherLevel(rng: () => number, entry: Entry, lower: Level): Level {
    const lowerPrompt = lower === entry.base ? 0 : lower === entry.tier128 ? 128_001 : 200_001;
    const lowerRates = classRates(entry, lowerPrompt);
    const level: Level = { in: exactAdd(lowerRates.input, randomRate(rng)), out: exactAdd(lowerRates.output, randomRate(rng)) };
    if (lower.cr !== undefined || rng() < 0.5) level.cr = exactAdd(lowerRates.cacheRead, randomRate(rng));
    if (lower.cw !== undefined || rng() < 0.5) level.cw = exactAdd(lowerRates.cacheWrite, randomRate(rng));
    return level;
  }

  function randomEntry(rng: () => number): Entry {
    const entry: Entry = { base: { in: randomRate(rng), out: randomRate(rng) } };
    if (rng() < 0.6) entry.base.cr = randomRate(rng);
    if (rng() < 0.6) entry.base.cw = randomRate(rng);
    if (rng() < 0.4) entry.reasoning = randomRate(rng);
    if (rng() < 0.25) entry.tier128 = higherLevel(rng, entry, entry.base);
    if (rng() < 0.35) entry.tier200 = higherLevel(rng, entry, entry.tier128 ?? entry.base);
    if (rng() < 0.3) entry.cacheWrite1h = randomRate(rng);
    if (rng() < 0.3) entry.audioIn = randomRate(rng);
    if (rng() < 0.3) entry.audioOut = randomRate(rng);
    if (rng() < 0.3) entry.searchMedium = randomRate(rng);
    return entry;
  }

  function entryFields(entry: Entry): Array<[string, Exact]> {
    const fields: Array<[string, Exact]> = [];
    const level = (l: Level, suffix: string) => {
      fields.push([`input_cost_per_token${suffix}`, l.in], [`output_cost_per_token${suffix}`, l.out]);
      if (l.cr) fields.push([`cache_read_input_token_cost${suffix}`, l.cr]);
      if (l.cw) fields.push([`cache_creation_input_token_cost${suffix}`, l.cw]);
    };
    level(entry.base, "");
    if (entry.reasoning) fields.push(["output_cost_per_reasoning_token", entry.reasoning]);
    if (entry.tier128) level(entry.tier128, "_above_128k_tokens");
    if (entry.tier200) level(entry.tier200, "_above_200k_tokens");
    if (entry.cacheWrite1h) fields.push(["cache_creation_input_token_cost_above_1hr", entry.cacheWrite1h]);
    if (entry.audioIn) fields.push(["input_cost_per_audio_token", entry.audioIn]);
    if (entry.audioOut) fields.push(["output_cost_per_audio_token", entry.audioOut]);
    return fields;
  }

  function randomTokens(rng: () => number) {
    const bucket = rng();
    const promptTokens =
      bucket < 0.1
        ? 0
        : bucket < 0.2
          ? int(rng, 199_998, 200_002)
          : bucket < 0.25
            ? int(rng, 127_998, 128_002)
            : bucket < 0.6
              ? int(rng, 1, 1_000)
              : int(rng, 1, 1_000_000);
    const cacheReadTokens = rng() < 0.5 ? int(rng, 0, promptTokens) : 0;
    const cacheWriteTokens = rng() < 0.5 ? int(rng, 0, promptTokens - cacheReadTokens) : 0;
    const completionTokens = rng() < 0.1 ? 0 : rng() < 0.5 ? int(rng, 1, 1_000) : int(rng, 1, 200_000);
    const reasoningTokens = rng() < 0.5 ? int(rng, 0, completionTokens) : 0;
    const cacheWrite1hTokens = rng() < 0.3 ? int(rng, 0, cacheWriteTokens) : 0;
    const audioInputTokens = rng() < 0.3 ? int(rng, 0, promptTokens - cacheReadTokens - cacheWriteTokens) : 0;
    const audioOutputTokens = rng() < 0.3 ? int(rng, 0, completionTokens - reasoningTokens) : 0;
    const webSearchRequests = rng() < 0.3 ? int(rng, 0, 5) : 0;
    return {
      promptTokens,
      cacheReadTokens,
      cacheWriteTokens,
      cacheWrite1hTokens,
      audioInputTokens,
      completionTokens,
      reasoningTokens,
      audioOutputTokens,
      webSearchRequests,
    };
  }

  type Tokens = ReturnType<typeof randomTokens>;

  function referenceUsd(entry: Entry, t: Tokens): Rational {
    const r = classRates(entry, t.promptTokens);
    const x = extraRates(entry, t.promptTokens);
    const terms: Array<[number, Exact]> = [
      [t.promptTokens - t.cacheReadTokens - t.cacheWriteTokens - t.audioInputTokens, r.input],
      [t.cacheReadTokens, r.cacheRead],
      [t.cacheWriteTokens - t.cacheWrite1hTokens, r.cacheWrite],
      [t.cacheWrite1hTokens, x.cacheWrite1h],
      [t.audioInputTokens, x.audioIn],
      [t.completionTokens - t.reasoningTokens - t.audioOutputTokens, r.output],
      [t.reasoningTokens, r.reasoning],
      [t.audioOutputTokens, x.audioOut],
      [t.webSearchRequests, x.search],
    ];
    return terms.reduce<Rational>(
      (sum, [count, rate]) => ratAdd(sum, ratMul({ n: BigInt(count), d: 1n }, toRational(rate))),
      { n: 0n, d: 1n },
    );
  }

  const CREDITS_PER_USD: Exact[] = [
    { m: 10_000_000n, k: 0 },
    { m: 1_000_000n, k: 0 },
    { m: 100n, k: 0 },
    { m: 1n, k: 0 },
    { m: 12_345n, k: 0 },
    { m: 25n, k: 1 }, // 2.5
    { m: 1n, k: 3 }, // 0.001
  ];

  it(`${CASES} random calls, with monotonicity, non-negativity and free models`, () => {
    const rng = seededRandom(SEED);
    const dir = mkdtempSync(join(tmpdir(), "price-property-"));
    let heldAtZero = 0;
    try {
      for (let index = 0; index < CASES; index += 1) {
        const entry = randomEntry(rng);
        const creditsPerUsd =
          rng() < 0.8 ? CREDITS_PER_USD[int(rng, 0, CREDITS_PER_USD.length - 1)]! : { m: BigInt(int(rng, 1, 1_000_000_000)), k: 0 };
        const markup: Exact = rng() < 0.3 ? { m: 1n, k: 0 } : rng() < 0.03 ? { m: 0n, k: 0 } : { m: BigInt(int(rng, 1, 40_000)), k: 4 };
        const fields = entryFields(entry);
        const viaCostMap = rng() < 0.25;
        const quoted = rng() < 0.5; // quoted decimal strings, or bare YAML/JSON numbers

        let yaml = `credits_per_usd: "${spell(creditsPerUsd, rng)}"\nmarkup: "${spell(markup, rng)}"\nfree_models: ["*:free"]\n`;
        // A bare number is a double: only values of at most 15 significant digits survive it exactly
        // (tier rates are sums of two random rates and can have more), so longer ones stay quoted.
        const literal = (value: Exact) => {
          const text = spell(value, rng);
          return quoted || value.m.toString().length > 15 ? JSON.stringify(text) : text;
        };
        const search = entry.searchMedium ? literal(entry.searchMedium) : undefined;
        const inline = [
          ...fields.map(([name, value]) => `${name}: ${literal(value)}`),
          ...(search ? [`search_context_cost_per_query: {search_context_size_medium: ${search}}`] : []),
        ].join(", ");
        if (viaCostMap) {
          const json = [
            ...fields.map(([name, value]) => `"${name}": ${literal(value)}`),
            ...(search ? [`"search_context_cost_per_query": {"search_context_size_medium": ${search}}`] : []),
          ].join(", ");
          writeFileSync(join(dir, `map-${index}.json`), `{"sample_spec": {"input_cost_per_token": "doc"}, "prop-model": {${json}}}`);
          yaml += `litellm_cost_map: map-${index}.json\nmodels:\n  "prop-model:free": {${inline}}\n`;
        } else {
          yaml += `models:\n  prop-model: {${inline}}\n  "prop-model:free": {${inline}}\n`;
        }
        const priceBook = parsePriceBook(yaml, { baseDirectory: dir });

        const scale = ratMul(toRational(markup), toRational(creditsPerUsd));
        // The cost map's rates never charge a call with usage 0 (an operator's own may): with no
        // reported cost, such a call is held. An entry whose every rate is 0 is no entry at all.
        const everyRateZero = fields.every(([, value]) => value.m === 0n) && (entry.searchMedium?.m ?? 0n) === 0n;
        const priceOf = (t: Tokens) => {
          const usd = referenceUsd(entry, t);
          const context = JSON.stringify({ index, yaml, tokens: t, usd: `${usd.n}/${usd.d}` });
          const hasUsage = t.promptTokens + t.completionTokens + t.webSearchRequests > 0;
          if (viaCostMap && (everyRateZero || (usd.n === 0n && hasUsage))) {
            expectUnpriced(priceUsageEvent(usageEvent({ model: "provider/prop-model", ...t }), priceBook));
            heldAtZero += 1;
            return 0n;
          }
          const charge = expectPriced(priceUsageEvent(usageEvent({ model: "provider/prop-model", ...t }), priceBook));
          expect(charge.pricingSource, context).toBe("price_book");
          // the provider cost is the exact USD sum: coefficient / 10^scale = n / d
          expect(charge.providerCostUsd.coefficient * usd.d, context).toBe(usd.n * pow10(charge.providerCostUsd.scale));
          expect(charge.chargedCredits, context).toBe(ratCeil(ratMul(usd, scale)));
          expect(charge.chargedCredits >= 0n, context).toBe(true);
          return charge.chargedCredits;
        };

        const tokens = randomTokens(rng);
        const charged = priceOf(tokens);

        // Monotonicity: one more token of any class never lowers the charge.
        const more: Tokens[] = [
          { ...tokens, promptTokens: tokens.promptTokens + 1 }, // an uncached prompt token
          { ...tokens, promptTokens: tokens.promptTokens + 1, cacheReadTokens: tokens.cacheReadTokens + 1 },
          { ...tokens, promptTokens: tokens.promptTokens + 1, cacheWriteTokens: tokens.cacheWriteTokens + 1 },
          { ...tokens, completionTokens: tokens.completionTokens + 1 },
          { ...tokens, completionTokens: tokens.completionTokens + 1, reasoningTokens: tokens.reasoningTokens + 1 },
          { ...tokens, promptTokens: tokens.promptTokens + 1, cacheWriteTokens: tokens.cacheWriteTokens + 1, cacheWrite1hTokens: tokens.cacheWrite1hTokens + 1 },
          { ...tokens, promptTokens: tokens.promptTokens + 1, audioInputTokens: tokens.audioInputTokens + 1 },
          { ...tokens, completionTokens: tokens.completionTokens + 1, audioOutputTokens: tokens.audioOutputTokens + 1 },
          { ...tokens, webSearchRequests: tokens.webSearchRequests + 1 },
        ];
        for (const bigger of more) {
          expect(priceOf(bigger) >= charged, JSON.stringify({ index, tokens, bigger })).toBe(true);
        }

        // Free: the same call under a free name costs 0, even though that name has a book entry.
        const free = expectPriced(priceUsageEvent(usageEvent({ model: "provider/prop-model:free", ...tokens }), priceBook));
        expect(free.pricingSource).toBe("free");
        expect(free.chargedCredits).toBe(0n);
      }
      // The rule above was reached, not only written.
      expect(heldAtZero).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the reference itself agrees with the hand-computed examples", () => {
    // gpt-4o 1 + 1: (2.5e-6 + 1e-5) × 1 × 1e7 = 125
    const entry: Entry = { base: { in: { m: 25n, k: 7 }, out: { m: 1n, k: 5 }, cr: { m: 125n, k: 8 } } };
    const none = { cacheWrite1hTokens: 0, audioInputTokens: 0, audioOutputTokens: 0, webSearchRequests: 0 };
    const t: Tokens = { ...none, promptTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0, completionTokens: 1, reasoningTokens: 0 };
    expect(ratCeil(ratMul(referenceUsd(entry, t), { n: 10_000_000n, d: 1n }))).toBe(125n);
    // 1,000 prompt (400 cached) + 200 completion = 0.004 USD → 40,000
    const t2: Tokens = { ...none, promptTokens: 1000, cacheReadTokens: 400, cacheWriteTokens: 0, completionTokens: 200, reasoningTokens: 0 };
    expect(ratCeil(ratMul(referenceUsd(entry, t2), { n: 10_000_000n, d: 1n }))).toBe(40_000n);
    // gpt-4o-audio-preview's rates: 200 × 2.5e-6 + 800 audio × 1e-4 + 100 × 1e-5 + 400 audio × 2e-4 = 0.1615 → 1,615,000
    const audio: Entry = { base: { in: { m: 25n, k: 7 }, out: { m: 1n, k: 5 } }, audioIn: { m: 1n, k: 4 }, audioOut: { m: 2n, k: 4 } };
    const t3: Tokens = { ...none, promptTokens: 1000, cacheReadTokens: 0, cacheWriteTokens: 0, audioInputTokens: 800, completionTokens: 500, reasoningTokens: 0, audioOutputTokens: 400 };
    expect(ratCeil(ratMul(referenceUsd(audio, t3), { n: 10_000_000n, d: 1n }))).toBe(1_615_000n);
    expect(spell({ m: 25n, k: 7 }, () => 0)).toBe("2.5e-6");
    expect(spell({ m: 25n, k: 7 }, () => 0.5)).toBe("0.0000025");
  });
});

describe("rates read from their decimal text", () => {
  it("keeps digits a binary float would drop", () => {
    const priceBook = parsePriceBook(
      `credits_per_usd: 10000000
models:
  precise: {input_cost_per_token: 2.50000000000000000001e-6, output_cost_per_token: 0}
`,
      { baseDirectory: tmpdir() },
    );
    // 2.50000000000000000001e-6 USD × 1e7 = 25.0000000000000000001 credits → 26; as a double it is 25.
    expect(toDecimalString(priceBook.models.get("precise")!.rates.input_cost_per_token!)).toBe("0.00000250000000000000000001");
    expect(credits(priceBook, { model: "precise", promptTokens: 1 })).toBe(26n);
  });
});
