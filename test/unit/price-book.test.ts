import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decimal, toDecimalString, ZERO } from "../../src/pricing/decimal.js";
import { parsePriceBook, PriceBookError } from "../../src/pricing/price-book.js";
import { BASE_BOOK, COST_MAP, credits, usePriceBooks } from "../support/price-books.js";

const { book, bookError } = usePriceBooks();

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
