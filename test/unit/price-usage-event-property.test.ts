import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parsePriceBook } from "../../src/pricing/price-book.js";
import { priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import { expectPriced, expectUnpriced } from "../support/price-books.js";
import {
  classRates,
  type Entry,
  entryFields,
  type Exact,
  exactAdd,
  type Level,
  pow10,
  ratCeil,
  ratMul,
  referenceUsd,
  spell,
  type Tokens,
  toRational,
} from "../support/pricing-reference.js";
import { seededRandom } from "../support/random.js";
import { usageEvent } from "../support/usage-events.js";

describe("property: chargedCredits equals an independent exact reference", () => {
  const CASES = 2000;
  const SEED = 0x5eed1234;

  function randomRate(rng: () => number): Exact {
    if (rng() < 0.05) return { m: 0n, k: 0 };
    const significant = 1 + Math.floor(rng() * 12);
    let digits = String(1 + Math.floor(rng() * 9));
    for (let i = 1; i < significant; i += 1) digits += String(Math.floor(rng() * 10));
    const leadExponent = -12 + Math.floor(rng() * 10); // -12 .. -3
    return { m: BigInt(digits), k: significant - 1 - leadExponent };
  }

  const int = (rng: () => number, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

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

  function randomTokens(rng: () => number): Tokens {
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
