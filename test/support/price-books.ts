import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect } from "vitest";
import type { Decimal } from "../../src/pricing/decimal.js";
import { type PriceBook, PriceBookError, parsePriceBook } from "../../src/pricing/price-book.js";
import { type PricingOutcome, priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import type { UsageEvent } from "../../src/usage/usage-event.js";
import { usageEvent } from "./usage-events.js";

// What the unit tests of pricing share: a small cost map and the price book that names it, and
// the outcomes a test expects.

type PricedOutcome = Extract<PricingOutcome, { priced: true }>;

export function expectPriced(outcome: PricingOutcome): PricedOutcome["charge"] {
  if (!outcome.priced) throw new Error(`expected a charge, got unpriced: ${outcome.message}`);
  return outcome.charge;
}

export function expectUnpriced(outcome: PricingOutcome): string {
  if (outcome.priced) throw new Error(`expected unpriced, got ${JSON.stringify(outcome.charge, bigintJson)}`);
  expect(outcome.reason).toBe("unpriced_model");
  return outcome.message;
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? `${value}n` : value;
}

/** The charged credits of a call that must be priced. */
export function credits(book: PriceBook, overrides: Partial<UsageEvent>): bigint {
  return expectPriced(priceUsageEvent(usageEvent(overrides), book)).chargedCredits;
}

// A small stand-in for LiteLLM's model_prices_and_context_window.json.
export const COST_MAP = {
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
export const BASE_BOOK = `
credits_per_usd: 10000000        # 1 credit = $0.0000001
markup: 1.0
unknown_models: reported_cost
free_models: ["*:free", "test-free-model"]
litellm_cost_map: cost-map.json
models:
  gpt-4o: {input_cost_per_token: 2.5e-6, output_cost_per_token: 1.0e-5, cache_read_input_token_cost: 1.25e-6}
`;

/** A charge with no terms, as free, cache hits and reported costs are. */
export function unitemisedCharge(pricingSource: string, providerCostUsd: Decimal, chargedCredits: bigint) {
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

/**
 * Price books read against a directory of this test file's own that holds COST_MAP as
 * `cost-map.json` (BASE_BOOK names it), removed after the file.
 */
export function usePriceBooks(): { book: (yaml?: string) => PriceBook; bookError: (yaml: string) => PriceBookError } {
  let workDir: string;

  beforeAll(() => {
    workDir = mkdtempSync(join(tmpdir(), "price-usage-event-"));
    writeFileSync(join(workDir, "cost-map.json"), JSON.stringify(COST_MAP, null, 2));
  });

  afterAll(() => {
    rmSync(workDir, { recursive: true, force: true });
  });

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

  return { book, bookError };
}
