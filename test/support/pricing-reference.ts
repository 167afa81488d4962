// An independent reference for pricing: exact bigint rationals, kept apart from src/pricing (its
// decimal type included), so the property test can hold priceUsageEvent to it. It states the
// contract's rules on its own: which rate prices each class of token, at which context tier.

/** An exact decimal of the reference: mantissa / 10^exp10, kept independent of src/pricing/decimal.ts. */
export type Exact = { m: bigint; k: number };
/** A non-negative rational n / d with d > 0. */
export type Rational = { n: bigint; d: bigint };

export const pow10 = (k: number): bigint => 10n ** BigInt(k);
export const exactAdd = (a: Exact, b: Exact): Exact => {
  const k = Math.max(a.k, b.k);
  return { m: a.m * pow10(k - a.k) + b.m * pow10(k - b.k), k };
};
export const toRational = (value: Exact): Rational => ({ n: value.m, d: pow10(value.k) });
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
export const ratMul = (a: Rational, b: Rational): Rational => reduced(a.n * b.n, a.d * b.d);
export const ratCeil = (r: Rational): bigint => {
  if (r.n < 0n) throw new Error("reference only handles non-negative values");
  return (r.n + r.d - 1n) / r.d;
};

/** Several spellings of one exact decimal, all naming the same value. */
export function spell(value: Exact, rng: () => number): string {
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

/** One level's rates: input, output, and where the entry has them, cache read and cache write. */
export type Level = { in: Exact; out: Exact; cr?: Exact; cw?: Exact };
/** A price entry's rates: the base level, its context tiers and the terms priced on their own. */
export type Entry = {
  base: Level;
  reasoning?: Exact;
  tier128?: Level;
  tier200?: Level;
  cacheWrite1h?: Exact;
  audioIn?: Exact;
  audioOut?: Exact;
  searchMedium?: Exact;
};

/**
 * A class's rate at a level, following the contract: tier rate, else base rate, else (cache) the
 * level's input. A tier applies where it prices input or output above 0, and a tier's rate of 0
 * is no rate (the cost map writes 0 for tiers a model does not have).
 */
export function classRates(entry: Entry, promptTokens: number) {
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
export function extraRates(entry: Entry, promptTokens: number) {
  const r = classRates(entry, promptTokens);
  return {
    cacheWrite1h: entry.cacheWrite1h ?? r.cacheWrite,
    audioIn: entry.audioIn ?? r.input,
    audioOut: entry.audioOut ?? r.output,
    search: entry.searchMedium ?? { m: 0n, k: 0 },
  };
}

/** The entry as price-book fields (the medium search rate aside: it is a nested field). */
export function entryFields(entry: Entry): Array<[string, Exact]> {
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

/** A call's usage, class by class, as a usage event counts it. */
export type Tokens = {
  promptTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  cacheWrite1hTokens: number;
  audioInputTokens: number;
  completionTokens: number;
  reasoningTokens: number;
  audioOutputTokens: number;
  webSearchRequests: number;
};

/** The call's exact cost in USD: each class of token at its rate, summed. */
export function referenceUsd(entry: Entry, t: Tokens): Rational {
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
