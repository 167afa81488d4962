import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PriceBook, parsePriceBook } from "../../src/pricing/price-book.js";
import { type PricingOutcome, priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import { canonicalModel } from "../../src/usage/model-name.js";
import type { UsageEvent } from "../../src/usage/usage-event.js";
import { usageEvent } from "../support/usage-events.js";

/**
 * Where LiteLLM's logged rates or its cost map would misprice a call, and the rule that prices it
 * instead. Entries are LiteLLM's own (1.81.13's cost map), cut to the fields that price tokens.
 */
const COST_MAP = {
  // All zero beside a priced entry of the same model, as in LiteLLM's map.
  "gemini/gemini-2.0-flash-exp": { input_cost_per_token: 0, output_cost_per_token: 0, input_cost_per_token_above_128k_tokens: 0, litellm_provider: "gemini" },
  "gemini-2.0-flash-exp": {
    input_cost_per_token: 1.5e-7,
    output_cost_per_token: 6e-7,
    cache_read_input_token_cost: 3.75e-8,
    // The map writes 0 for a tier the model does not have.
    input_cost_per_token_above_128k_tokens: 0,
    output_cost_per_token_above_128k_tokens: 0,
    litellm_provider: "vertex_ai-language-models",
  },
  "anthropic.claude-sonnet-4-5-20250929-v1:0": { input_cost_per_token: 3e-6, output_cost_per_token: 1.5e-5, litellm_provider: "bedrock_converse" },
  "us.anthropic.claude-sonnet-4-5-20250929-v1:0": { input_cost_per_token: 3.3e-6, output_cost_per_token: 1.65e-5, litellm_provider: "bedrock_converse" },
  "gpt-4o": {
    input_cost_per_token: 2.5e-6,
    output_cost_per_token: 1e-5,
    cache_read_input_token_cost: 1.25e-6,
    input_cost_per_token_priority: 4.25e-6,
    output_cost_per_token_priority: 1.7e-5,
    cache_read_input_token_cost_priority: 2.125e-6,
    litellm_provider: "openai",
  },
  "gpt-4o-mini": { input_cost_per_token: 1.5e-7, output_cost_per_token: 6e-7, cache_read_input_token_cost: 7.5e-8, litellm_provider: "openai" },
  "azure/gpt-4o-mini": { input_cost_per_token: 1.65e-7, output_cost_per_token: 6.6e-7, cache_read_input_token_cost: 8.3e-8, litellm_provider: "azure" },
  "claude-opus-4-6": { input_cost_per_token: 5e-6, output_cost_per_token: 2.5e-5, cache_read_input_token_cost: 5e-7, litellm_provider: "anthropic" },
  // As in LiteLLM's map: fast mode's entry carries the standard model's long-context rates.
  "fast/claude-opus-4-6": { input_cost_per_token: 3e-5, output_cost_per_token: 1.5e-4, cache_read_input_token_cost: 5e-7, input_cost_per_token_above_200k_tokens: 1e-5, output_cost_per_token_above_200k_tokens: 3.75e-5, litellm_provider: "anthropic" },
  "us/claude-opus-4-6": { input_cost_per_token: 5.5e-6, output_cost_per_token: 2.75e-5, cache_read_input_token_cost: 5.5e-7, litellm_provider: "anthropic" },
  "fast/us/claude-opus-4-6": { input_cost_per_token: 3e-5, output_cost_per_token: 1.5e-4, cache_read_input_token_cost: 5.5e-7, litellm_provider: "anthropic" },
  "claude-sonnet-4-5": { input_cost_per_token: 3e-6, output_cost_per_token: 1.5e-5, litellm_provider: "anthropic" },
};

// model_map_value as LiteLLM logs it: the doubles' shortest text.
const OPUS_LOGGED = { input_cost_per_token: "0.000005", output_cost_per_token: "0.000025", cache_read_input_token_cost: "5e-7" };

let dir: string;
let book: PriceBook;
const bookWith = (extra: string) => parsePriceBook(`credits_per_usd: 10000000\nlitellm_cost_map: cost-map.json\n${extra}`, { baseDirectory: dir });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "gateway-parity-"));
  writeFileSync(join(dir, "cost-map.json"), JSON.stringify(COST_MAP));
  book = bookWith("");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function charged(outcome: PricingOutcome) {
  if (!outcome.priced) throw new Error(`expected a charge, got: ${outcome.message}`);
  return outcome.charge;
}

function held(outcome: PricingOutcome): string {
  if (outcome.priced) throw new Error(`expected the call held, got ${outcome.charge.chargedCredits} credits`);
  expect(outcome.reason).toBe("unpriced_model");
  return outcome.message;
}

const price = (overrides: Partial<UsageEvent>, priceBook = book) => priceUsageEvent(usageEvent(overrides), priceBook);

describe("a call with usage is never charged 0 unless an operator said so", () => {
  it("passes over a cost-map entry whose rates are all 0 for the next name that has rates", () => {
    // gemini-2.0-flash-exp: 100,000 × 1.5e-7 + 2,000 × 6e-7 = 0.0162 USD (LiteLLM charged this, we charged 0)
    const charge = charged(price({ model: "gemini-2.0-flash-exp", provider: "gemini", promptTokens: 100_000, completionTokens: 2_000 }));
    expect(charge).toMatchObject({ rateStep: "cost_map", priceEntry: "gemini-2.0-flash-exp", chargedCredits: 162_000n });
  });

  it("reads a tier's rate of 0 as no tier: above 128k the base rates apply", () => {
    const charge = charged(price({ model: "gemini-2.0-flash-exp", provider: "gemini", promptTokens: 150_000, completionTokens: 1_000 }));
    // 150,000 × 1.5e-7 + 1,000 × 6e-7 = 0.0231
    expect(charge).toMatchObject({ contextTier: null, chargedCredits: 231_000n });
  });

  it("rates that come to 0 for a call with tokens are no rates: LiteLLM's figure where it has one, else held", () => {
    const zeroRates = { input_cost_per_token: "0", output_cost_per_token: "0.000001" };
    const onlyPrompt = { model: "mystery", gatewayRates: zeroRates, promptTokens: 1_000 };
    expect(charged(price({ ...onlyPrompt, reportedCostUsd: "0.0135" }))).toMatchObject({
      pricingSource: "reported_cost",
      chargedCredits: 135_000n,
      reason: "mystery has only rates of 0 (model_map_value): LiteLLM's reported cost",
    });
    expect(held(price(onlyPrompt))).toBe("mystery has only rates of 0 (model_map_value) and LiteLLM reported no cost");
    expect(held(price({ ...onlyPrompt, reportedCostUsd: "0" }))).toMatch(/reported 0 for a call with tokens/);
  });

  it("an operator's entry of 0 is the operator saying so", () => {
    const free = bookWith("models:\n  in-house: {input_cost_per_token: 0, output_cost_per_token: 0}\n");
    expect(charged(price({ model: "in-house", promptTokens: 1_000, completionTokens: 10 }, free))).toMatchObject({ rateStep: "price_book", chargedCredits: 0n });
  });
});

describe("Bedrock through a cross-region inference profile", () => {
  const rates = { input_cost_per_token: "0.000003", output_cost_per_token: "0.000015" };

  it("is priced by the profile's own entry, not the base model's rates LiteLLM logged", () => {
    for (const model of ["us.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock/invoke/us.anthropic.claude-sonnet-4-5-20250929-v1:0"]) {
      const charge = charged(
        price({ model, provider: "bedrock", modelMapKey: "anthropic.claude-sonnet-4-5-20250929-v1:0", gatewayRates: rates, promptTokens: 100_000, completionTokens: 20_000 }),
      );
      // 100,000 × 3.3e-6 + 20,000 × 1.65e-5 = 0.66 (the base rates: 0.6, 60,000 credits low)
      expect(charge, model).toMatchObject({ rateStep: "cost_map", priceEntry: "us.anthropic.claude-sonnet-4-5-20250929-v1:0", chargedCredits: 6_600_000n });
    }
  });

  it("a deployment that set its own prices keeps them: the profile's entry wins only over the base model's published rates", () => {
    const own = { input_cost_per_token: "0.000005", output_cost_per_token: "0.00002" };
    const charge = charged(price({ model: "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", provider: "bedrock", modelMapKey: "anthropic.claude-sonnet-4-5-20250929-v1:0", gatewayRates: own, promptTokens: 100_000, completionTokens: 20_000 }));
    // 100,000 × 5e-6 + 20,000 × 2e-5 = 0.9
    expect(charge).toMatchObject({ rateStep: "gateway", chargedCredits: 9_000_000n });
  });

  it("on_divergence never undoes it: LiteLLM's figure at the base rates is reported, not charged", () => {
    for (const onDivergence of ["reported", "higher", "quarantine"]) {
      const outcome = price(
        { model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0", provider: "bedrock", modelMapKey: "anthropic.claude-sonnet-4-5-20250929-v1:0", gatewayRates: rates, promptTokens: 100_000, completionTokens: 20_000, reportedCostUsd: "0.6" },
        bookWith(`on_divergence: ${onDivergence}\n`),
      );
      // LiteLLM's own figure agrees with the rates it logged; the profile's price is what is charged.
      expect(charged(outcome), onDivergence).toMatchObject({ pricingSource: "price_book", chargedCredits: 6_600_000n, divergence: null });
    }
  });

  it("an operator's entry still wins, and a base model id is not a profile", () => {
    const own = bookWith("models:\n  us.anthropic.claude-sonnet-4-5-20250929-v1:0: {input_cost_per_token: 4e-6, output_cost_per_token: 2e-5}\n");
    expect(charged(price({ model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0", promptTokens: 1 }, own))).toMatchObject({ rateStep: "price_book", chargedCredits: 40n });
    expect(charged(price({ model: "anthropic.claude-sonnet-4-5-20250929-v1:0", gatewayRates: rates, promptTokens: 1 }))).toMatchObject({ rateStep: "gateway" });
  });
});

describe("a Router deployment with its own prices", () => {
  // As logged for a deployment priced at 1e-6 / 2e-6: its two prices, the published model's other rates.
  const logged = { input_cost_per_token: "0.000001", output_cost_per_token: "0.000002", cache_read_input_token_cost: "0.00000125", input_cost_per_token_priority: "0.00000425", output_cost_per_token_priority: "0.000017", cache_read_input_token_cost_priority: "0.000002125" };
  const call = (overrides: Partial<UsageEvent>) => charged(price({ model: "gpt-4o", modelMapKey: "gpt-4o", provider: "openai", gatewayRates: logged, ...overrides }));

  it("charges terms it did not price at its own input and output prices, and says so", () => {
    // 2,000 uncached × 1e-6 + 8,000 cached × 1e-6 (not the published 1.25e-6) + 2,000 × 2e-6 = 0.014
    const cached = call({ promptTokens: 10_000, cacheReadTokens: 8_000, completionTokens: 2_000 });
    expect(cached).toMatchObject({ rateStep: "gateway", priceEntry: "model_map_value (the deployment's own prices)", chargedCredits: 140_000n });
    expect(cached.reason).toMatch(/its own input and output prices/);
    expect(cached.lines.find((line) => line.tokenClass === "cache_read")).toMatchObject({ rateField: "input_cost_per_token" });
  });

  it("a priority call is charged its own price, never the published priority rate", () => {
    const priority = call({ serviceTier: "priority", promptTokens: 10_000, completionTokens: 2_000 });
    expect(priority).toMatchObject({ serviceTier: null, chargedCredits: 140_000n });
  });

  it("a price the deployment did set itself is kept", () => {
    const ownCache = call({ gatewayRates: { ...logged, cache_read_input_token_cost: "5e-7" }, promptTokens: 10_000, cacheReadTokens: 8_000 });
    // 2,000 × 1e-6 + 8,000 × 5e-7 = 0.006
    expect(ownCache.chargedCredits).toBe(60_000n);
  });

  it("on_divergence never undoes it: LiteLLM's figure at the mixed rates is not what is charged", () => {
    for (const onDivergence of ["reported", "higher", "quarantine"]) {
      // LiteLLM: 2,000 × 1e-6 + 8,000 × 1.25e-6 + 2,000 × 2e-6 = 0.016
      const outcome = price({ model: "gpt-4o", modelMapKey: "gpt-4o", provider: "openai", gatewayRates: logged, promptTokens: 10_000, cacheReadTokens: 8_000, completionTokens: 2_000, reportedCostUsd: "0.016" }, bookWith(`on_divergence: ${onDivergence}\n`));
      expect(charged(outcome), onDivergence).toMatchObject({ pricingSource: "price_book", chargedCredits: 140_000n, divergence: null });
    }
  });

  it("a provider's own published entry is not taken for a deployment's prices (Azure's gpt-4o-mini is not OpenAI's)", () => {
    const azure = { input_cost_per_token: "1.65e-7", output_cost_per_token: "6.6e-7", cache_read_input_token_cost: "8.3e-8" };
    const charge = charged(price({ model: "gpt-4o-mini", modelMapKey: "gpt-4o-mini", provider: "azure", gatewayRates: azure, promptTokens: 10_000, cacheReadTokens: 8_000, completionTokens: 2_000 }));
    // 2,000 × 1.65e-7 + 8,000 × 8.3e-8 + 2,000 × 6.6e-7 = 0.002314
    expect(charge).toMatchObject({ priceEntry: "model_map_value", chargedCredits: 23_140n, reason: null });
  });

  it("a cost map of another version (every rate moved) is not taken for a deployment's prices", () => {
    const newer = { input_cost_per_token: "0.000002", output_cost_per_token: "0.000008", cache_read_input_token_cost: "0.000001" };
    expect(call({ gatewayRates: newer, promptTokens: 10_000, cacheReadTokens: 8_000 })).toMatchObject({ priceEntry: "model_map_value", reason: null });
  });

  it("a deployment at the published prices is charged the published rates, tiers and all", () => {
    const published = { input_cost_per_token: "0.0000025", output_cost_per_token: "0.00001", cache_read_input_token_cost: "0.00000125" };
    const charge = call({ gatewayRates: published, promptTokens: 10_000, cacheReadTokens: 8_000 });
    // 2,000 × 2.5e-6 + 8,000 × 1.25e-6 = 0.015
    expect(charge).toMatchObject({ priceEntry: "model_map_value", chargedCredits: 150_000n, reason: null });
  });
});

describe("Anthropic fast mode and US-only inference", () => {
  const opus = { model: "claude-opus-4-6", modelMapKey: "claude-opus-4-6", provider: "anthropic", gatewayRates: OPUS_LOGGED, promptTokens: 1_000, completionTokens: 500 };

  it("are priced from their own entries, though LiteLLM logs the base model's rates", () => {
    // base: 1,000 × 5e-6 + 500 × 2.5e-5 = 0.0175
    expect(charged(price(opus)).chargedCredits).toBe(175_000n);
    // fast: 1,000 × 3e-5 + 500 × 1.5e-4 = 0.105
    expect(charged(price({ ...opus, speed: "fast" }))).toMatchObject({ rateStep: "cost_map", priceEntry: "fast/claude-opus-4-6", chargedCredits: 1_050_000n });
    // US only: 1,000 × 5.5e-6 + 500 × 2.75e-5 = 0.01925
    expect(charged(price({ ...opus, inferenceGeo: "us" }))).toMatchObject({ priceEntry: "us/claude-opus-4-6", chargedCredits: 192_500n });
    expect(charged(price({ ...opus, speed: "fast", inferenceGeo: "us" }))).toMatchObject({ priceEntry: "fast/us/claude-opus-4-6", chargedCredits: 1_050_000n });
  });

  it("a long prompt never makes fast mode cheaper: a context tier below the base rate is no tier", () => {
    // 200,001 × 3e-5 + 10,000 × 1.5e-4 = 7.50003, not the standard model's long-context rates (3.75003)
    expect(charged(price({ ...opus, speed: "fast", promptTokens: 200_001, completionTokens: 10_000 }))).toMatchObject({ contextTier: null, chargedCredits: 75_000_300n });
  });

  it("the standard values are the base price", () => {
    for (const mode of [{ speed: "standard" }, { inferenceGeo: "global" }, { inferenceGeo: "not_available" }]) {
      expect(charged(price({ ...opus, ...mode })).chargedCredits, JSON.stringify(mode)).toBe(175_000n);
    }
  });

  it("an operator's entry for the mode wins; without one anywhere the call is held, never charged the base price", () => {
    const own = bookWith("models:\n  fast/claude-opus-4-6: {input_cost_per_token: 4e-5, output_cost_per_token: 2e-4}\n  claude-sonnet-4-5: {input_cost_per_token: 3e-6, output_cost_per_token: 1.5e-5}\n");
    expect(charged(price({ ...opus, speed: "fast" }, own))).toMatchObject({ rateStep: "price_book", chargedCredits: 1_400_000n });
    expect(held(price({ ...opus, model: "claude-sonnet-4-5", modelMapKey: "claude-sonnet-4-5", speed: "fast", reportedCostUsd: "0.0105" }, own))).toBe(
      "claude-sonnet-4-5: a call with speed \"fast\" has no rates of its own (fast/claude-sonnet-4-5 is in neither the price book nor the cost map), and the base rates would undercharge it",
    );
    expect(held(price({ ...opus, speed: "turbo" }))).toMatch(/speed "turbo" has no rates of its own, and the base rates/);
    expect(held(price({ ...opus, inferenceGeo: "eu" }))).toMatch(/inference_geo "eu"/);
  });
});

describe("LiteLLM's own margin and provider discount", () => {
  const opus = { model: "claude-opus-4-6", modelMapKey: "claude-opus-4-6", provider: "anthropic", gatewayRates: OPUS_LOGGED, promptTokens: 1_000, completionTokens: 500 };
  // A 10% margin plus 0.001 fixed on 0.0175: response_cost 0.02025.
  const withMargin = { ...opus, reportedCostUsd: "0.02025", reportedOriginalCostUsd: "0.0175", litellmMarginUsd: "0.00275" };

  it("is compared before the margin: no divergence, and the margin is not billed", () => {
    expect(charged(price(withMargin))).toMatchObject({ chargedCredits: 175_000n, divergence: null, reportedCostUsd: { coefficient: 2025n, scale: 5 } });
  });

  it("is never billed where LiteLLM's figure is charged", () => {
    for (const onDivergence of ["reported", "higher"]) {
      const divergent = { ...withMargin, reportedCostUsd: "0.02475", reportedOriginalCostUsd: "0.0225", litellmMarginUsd: "0.00225" };
      // LiteLLM's own figure before its margin: 0.0225 → 225,000 credits, not 247,500
      expect(charged(price(divergent, bookWith(`on_divergence: ${onDivergence}\n`))), onDivergence).toMatchObject({ pricingSource: "reported_cost", chargedCredits: 225_000n });
    }
    expect(charged(price({ model: "unknown", promptTokens: 10, reportedCostUsd: "0.0011", reportedOriginalCostUsd: "0.001", litellmMarginUsd: "0.0001" }))).toMatchObject({ pricingSource: "reported_cost", chargedCredits: 10_000n });
  });
});

describe("one model across LiteLLM versions", () => {
  it("drops only the prefix naming the call's own provider", () => {
    expect(canonicalModel("openai/gpt-4o-mini", "openai")).toBe("gpt-4o-mini");
    expect(canonicalModel("gpt-4o-mini", "openai")).toBe("gpt-4o-mini");
    expect(canonicalModel("azure/my-deployment", "azure")).toBe("my-deployment");
    expect(canonicalModel("openrouter/openai/gpt-4o", "openrouter")).toBe("openai/gpt-4o");
    expect(canonicalModel("openai/gpt-4o", "azure")).toBe("openai/gpt-4o");
    expect(canonicalModel("openai/", "openai")).toBe("openai/");
    expect(canonicalModel("openai/gpt-4o", null)).toBe("openai/gpt-4o");
    expect(canonicalModel(null, "openai")).toBeNull();
  });
});
