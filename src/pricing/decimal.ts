/**
 * Exact decimals as `coefficient × 10^-scale` on bigint, for prices:
 * sums and products of decimals are exact decimals, so no rounding happens until
 * `ceilToBigInt` turns a cost into whole credits.
 */
export type Decimal = { readonly coefficient: bigint; readonly scale: number };

const DECIMAL_TEXT = /^([+-])?(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$|^([+-])?\.(\d+)(?:[eE]([+-]?\d+))?$/;

export const ZERO: Decimal = { coefficient: 0n, scale: 0 };

// Far beyond any price; bounds the bigint work a hostile or mistyped exponent could cause.
const MAX_EXPONENT = 1000;

export function decimal(text: string): Decimal {
  const match = DECIMAL_TEXT.exec(text.trim());
  if (!match) throw new RangeError(`not a decimal number: ${JSON.stringify(text)}`);
  const sign = match[1] ?? match[5];
  const whole = match[2] ?? "0";
  const fraction = match[3] ?? match[6] ?? "";
  const exponent = Number(match[4] ?? match[7] ?? "0");
  if (Math.abs(exponent) > MAX_EXPONENT) throw new RangeError(`exponent out of range: ${JSON.stringify(text)}`);
  let coefficient = BigInt(whole + fraction);
  let scale = fraction.length - exponent;
  if (scale < 0) {
    coefficient *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return normalise({ coefficient: sign === "-" ? -coefficient : coefficient, scale });
}

/**
 * A JavaScript number as the decimal its shortest round-trip text names: the literal an
 * operator wrote in YAML or LiteLLM wrote in JSON (both print shortest round-trip forms).
 */
export function decimalFromNumber(value: number): Decimal {
  if (!Number.isFinite(value)) throw new RangeError(`not a finite number: ${value}`);
  return decimal(String(value));
}

export function fromBigInt(value: bigint): Decimal {
  return { coefficient: value, scale: 0 };
}

export function add(a: Decimal, b: Decimal): Decimal {
  const scale = Math.max(a.scale, b.scale);
  return normalise({ coefficient: rescale(a, scale) + rescale(b, scale), scale });
}

/** The sum of all, normalised once: what adding them one by one gives, without a normalise per term. */
export function sum(values: readonly Decimal[]): Decimal {
  let scale = 0;
  for (const value of values) if (value.scale > scale) scale = value.scale;
  let coefficient = 0n;
  for (const value of values) coefficient += rescale(value, scale);
  return normalise({ coefficient, scale });
}

export function subtract(a: Decimal, b: Decimal): Decimal {
  return add(a, { coefficient: -b.coefficient, scale: b.scale });
}

export function multiply(a: Decimal, b: Decimal): Decimal {
  return normalise({ coefficient: a.coefficient * b.coefficient, scale: a.scale + b.scale });
}

export function compare(a: Decimal, b: Decimal): -1 | 0 | 1 {
  const scale = Math.max(a.scale, b.scale);
  const left = rescale(a, scale);
  const right = rescale(b, scale);
  return left < right ? -1 : left > right ? 1 : 0;
}

export function isZero(value: Decimal): boolean {
  return value.coefficient === 0n;
}

/** The smallest integer not below the value. */
export function ceilToBigInt(value: Decimal): bigint {
  const unit = powerOfTen(value.scale);
  const quotient = value.coefficient / unit;
  const remainder = value.coefficient % unit;
  return remainder > 0n ? quotient + 1n : quotient;
}

/**
 * The value rounded to `digits` significant digits, half away from zero: how a double's
 * shortest text (0.00022500000000000002) becomes the figure it stands for (0.000225).
 */
export function roundToSignificant(value: Decimal, digits: number): Decimal {
  const magnitude = value.coefficient < 0n ? -value.coefficient : value.coefficient;
  const excess = magnitude.toString().length - digits;
  if (excess <= 0) return value;
  const unit = 10n ** BigInt(excess);
  const rounded = ((magnitude + unit / 2n) / unit) * unit;
  return normalise({ coefficient: value.coefficient < 0n ? -rounded : rounded, scale: value.scale });
}

/** Plain decimal text without exponent, as PostgreSQL `numeric` accepts it. */
export function toDecimalString(value: Decimal): string {
  const negative = value.coefficient < 0n;
  const digits = (negative ? -value.coefficient : value.coefficient).toString().padStart(value.scale + 1, "0");
  const whole = digits.slice(0, digits.length - value.scale);
  const fraction = digits.slice(digits.length - value.scale);
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
}

function rescale(value: Decimal, scale: number): bigint {
  return scale === value.scale ? value.coefficient : value.coefficient * powerOfTen(scale - value.scale);
}

// Prices use a few dozen scales at most; computing 10^n anew each time is most of an addition.
const POWERS_OF_TEN = Array.from({ length: 64 }, (_, exponent) => 10n ** BigInt(exponent));

function powerOfTen(exponent: number): bigint {
  return POWERS_OF_TEN[exponent] ?? 10n ** BigInt(exponent);
}

function normalise(value: Decimal): Decimal {
  let { coefficient, scale } = value;
  if (coefficient === 0n) return ZERO;
  while (scale > 0 && coefficient % 10n === 0n) {
    coefficient /= 10n;
    scale -= 1;
  }
  return { coefficient, scale };
}
