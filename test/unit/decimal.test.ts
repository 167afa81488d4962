import { describe, expect, it } from "vitest";
import {
  add,
  ceilToBigInt,
  compare,
  type Decimal,
  decimal,
  decimalFromNumber,
  fromBigInt,
  isZero,
  multiply,
  sum,
  toDecimalString,
  ZERO,
} from "../../src/pricing/decimal.js";

/** The expected normalised form: coefficient × 10^-scale, no trailing zeros in the coefficient. */
const d = (coefficient: bigint, scale: number): Decimal => ({ coefficient, scale });

describe("decimal(text)", () => {
  it.each([
    // text, coefficient, scale (value = coefficient × 10^-scale)
    ["2.5e-6", 25n, 7], // 2.5 × 10^-6 = 25 × 10^-7
    ["0.0000025", 25n, 7], // the same value written out
    ["1e-5", 1n, 5],
    ["1E-5", 1n, 5],
    [".5", 5n, 1],
    ["+.5", 5n, 1],
    ["-.5e1", -5n, 0], // -0.5 × 10 = -5
    ["-3.10", -31n, 1], // the trailing zero is dropped: -3.1
    ["12", 12n, 0],
    ["12.", 12n, 0],
    ["+12", 12n, 0],
    ["00012.5000", 125n, 1], // leading and trailing zeros do not matter
    ["1e3", 1000n, 0], // positive exponents give whole numbers, scale 0
    ["1E+3", 1000n, 0],
    ["1.23e2", 123n, 0],
    ["1.234e2", 1234n, 1], // 123.4
    ["123e-2", 123n, 2], // 1.23
    ["3.75e-06", 375n, 8], // LiteLLM's JSON writes two-digit exponents
    ["1.5e-05", 15n, 6],
    ["1e-400", 1n, 400], // far beyond a double's range, still exact
    ["  2.5e-6  ", 25n, 7], // surrounding blanks are trimmed
  ] as const)("parses %j as %s × 10^-%s", (text, coefficient, scale) => {
    expect(decimal(text)).toEqual(d(coefficient, scale));
  });

  it.each(["0", "0.000", "-0", "-0.0", "+0", "0e10", ".0", "0e-10"])("parses %j as canonical ZERO", (text) => {
    const value = decimal(text);
    expect(value).toEqual(ZERO);
    expect(value).toEqual(d(0n, 0));
    expect(isZero(value)).toBe(true);
  });

  it("gives the same decimal for every spelling of one value", () => {
    const spellings = ["0.0000025", "2.5e-6", "25e-7", "0.25e-5", "2.50000E-06", "+.0000025"];
    for (const text of spellings) expect(decimal(text), text).toEqual(d(25n, 7));
  });

  it.each([
    "",
    " ",
    "abc",
    ".",
    "-",
    "+",
    "e5",
    "1e",
    "1e+",
    "1.2.3",
    "--1",
    "+-1",
    "1-",
    "0x10",
    "1_000",
    "1,5",
    "1 000",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e5.5",
    "five",
    "$1.00",
    "1.5e-6 USD",
  ])("rejects %j with a RangeError", (text) => {
    expect(() => decimal(text)).toThrow(RangeError);
    expect(() => decimal(text)).toThrow(/not a decimal number/);
  });
});

describe("decimalFromNumber", () => {
  it("reads a number as the literal its shortest round-trip text names", () => {
    expect(decimalFromNumber(2.5e-6)).toEqual(d(25n, 7));
    expect(decimalFromNumber(1.0e-5)).toEqual(d(1n, 5));
    expect(decimalFromNumber(3.75e-6)).toEqual(d(375n, 8));
    // 0.1 is not the binary expansion 0.1000000000000000055511151231257827..., but 1/10.
    expect(decimalFromNumber(0.1)).toEqual(d(1n, 1));
    // String(1e-7) is "1e-7" and String(1e21) is "1e+21": both exponent forms parse.
    expect(decimalFromNumber(1e-7)).toEqual(d(1n, 7));
    expect(decimalFromNumber(1e21)).toEqual(d(10n ** 21n, 0));
    expect(decimalFromNumber(10_000_000)).toEqual(d(10_000_000n, 0));
    expect(decimalFromNumber(-1.5)).toEqual(d(-15n, 1));
    expect(decimalFromNumber(0)).toEqual(ZERO);
    expect(decimalFromNumber(-0)).toEqual(ZERO);
  });

  it("keeps a double's error when the number itself is already off (0.1 + 0.2)", () => {
    // 0.1 + 0.2 is the double 0.30000000000000004; the decimal says exactly that, not 0.3.
    expect(toDecimalString(decimalFromNumber(0.1 + 0.2))).toBe("0.30000000000000004");
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])("rejects %s", (value) => {
    expect(() => decimalFromNumber(value)).toThrow(RangeError);
    expect(() => decimalFromNumber(value)).toThrow(/not a finite number/);
  });
});

describe("add and multiply are exact", () => {
  it("2.5e-6 + 1e-5 = 0.0000125 exactly", () => {
    // 25 × 10^-7 + 100 × 10^-7 = 125 × 10^-7
    const sum = add(decimal("2.5e-6"), decimal("1e-5"));
    expect(sum).toEqual(d(125n, 7));
    expect(toDecimalString(sum)).toBe("0.0000125");
  });

  it("3 × 2.5e-6 + 1e-5 = 0.0000175 exactly, where doubles drift and a ceil would overcharge", () => {
    // gpt-4o: 3 prompt tokens at 2.5e-6 + 1 completion token at 1e-5 = 1.75e-5 USD = 175 credits at 1e7/USD.
    const cost = add(multiply(fromBigInt(3n), decimal("2.5e-6")), decimal("1e-5"));
    expect(cost).toEqual(d(175n, 7));
    expect(ceilToBigInt(multiply(cost, decimal("10000000")))).toBe(175n);
    // The same in doubles: 1.7500000000000002e-5, × 1e7 = 175.00000000000003, ceil 176.
    expect(3 * 2.5e-6 + 1e-5).toBe(1.7500000000000002e-5);
    expect(Math.ceil((3 * 2.5e-6 + 1e-5) * 1e7)).toBe(176);
  });

  it("2000 × 3.75e-6 = 0.0075 exactly (doubles give 0.007500000000000001)", () => {
    const product = multiply(fromBigInt(2000n), decimal("3.75e-6"));
    expect(product).toEqual(d(75n, 4));
    expect(3.75e-6 * 2000).toBe(0.007500000000000001);
  });

  it("0.1 + 0.2 = 0.3 and 0.1 × 0.2 = 0.02 exactly", () => {
    expect(add(decimal("0.1"), decimal("0.2"))).toEqual(d(3n, 1));
    expect(multiply(decimal("0.1"), decimal("0.2"))).toEqual(d(2n, 2));
  });

  it("normalises results: trailing zeros go, zero is canonical", () => {
    // 2.5e-6 × 1e7 = 25, a whole number with scale 0
    expect(multiply(decimal("2.5e-6"), decimal("10000000"))).toEqual(d(25n, 0));
    // 0.5 + 0.5 = 1
    expect(add(decimal(".5"), decimal("0.5"))).toEqual(d(1n, 0));
    // -3.10 + 3.1 = 0
    expect(add(decimal("-3.10"), decimal("3.1"))).toEqual(ZERO);
    expect(multiply(decimal("0"), decimal("1.234"))).toEqual(ZERO);
    // a non-normalised input still yields a normalised result
    expect(add(d(1200n, 2), ZERO)).toEqual(d(12n, 0));
  });

  it("handles signs and very different scales", () => {
    // -1.5 × 2.5e-6 = -3.75e-6
    expect(multiply(decimal("-1.5"), decimal("2.5e-6"))).toEqual(d(-375n, 8));
    // 1e20 + 1e-20 keeps every digit: 10^40 + 1 over 10^20
    expect(add(decimal("1e20"), decimal("1e-20"))).toEqual(d(10n ** 40n + 1n, 20));
    expect(toDecimalString(add(decimal("1e20"), decimal("1e-20")))).toBe(`1${"0".repeat(20)}.${"0".repeat(19)}1`);
  });

  it("compare orders by value, not by spelling", () => {
    expect(compare(decimal("0.1"), decimal("0.10"))).toBe(0);
    expect(compare(decimal("1e-5"), decimal("2.5e-6"))).toBe(1);
    expect(compare(decimal("2.5e-6"), decimal("1e-5"))).toBe(-1);
    expect(compare(decimal("-3.1"), decimal("0"))).toBe(-1);
    expect(compare(d(1200n, 2), decimal("12"))).toBe(0);
  });

  it("sum is adding one by one: exact, normalised, zero for none", () => {
    const terms = [decimal("2.5e-6"), decimal("-1e-5"), decimal("1e20"), decimal("0.10"), d(1200n, 2), ZERO];
    expect(sum(terms)).toEqual(terms.reduce(add, ZERO));
    expect(sum([decimal(".5"), decimal("0.5")])).toEqual(d(1n, 0));
    expect(sum([decimal("-3.10"), decimal("3.1")])).toEqual(ZERO);
    expect(sum([])).toEqual(ZERO);
  });

  it("fromBigInt and isZero", () => {
    expect(fromBigInt(125n)).toEqual(d(125n, 0));
    expect(isZero(fromBigInt(0n))).toBe(true);
    expect(isZero(decimal("1e-400"))).toBe(false);
  });
});

describe("ceilToBigInt", () => {
  it.each([
    // value, ceil
    ["12", 12n], // exact integers stay
    ["12.000", 12n],
    ["1e3", 1000n],
    ["0", 0n],
    ["-0", 0n],
    ["0.0000001", 1n], // any positive fraction rounds up
    ["12.3", 13n],
    ["12.0000000000000000001", 13n],
    ["0.999999", 1n],
    ["187.5", 188n],
    ["-1.5", -1n], // the smallest integer not below -1.5
    ["-0.1", 0n],
    ["-2", -2n],
    ["123456789012345678901234567890.000001", 123456789012345678901234567891n],
  ] as const)("ceil(%s) = %s", (text, expected) => {
    expect(ceilToBigInt(decimal(text))).toBe(expected);
  });

  it("works on non-normalised values too", () => {
    expect(ceilToBigInt(d(1200n, 2))).toBe(12n); // 12.00
    expect(ceilToBigInt(d(1201n, 2))).toBe(13n); // 12.01
    expect(ceilToBigInt(d(0n, 5))).toBe(0n);
  });
});

describe("toDecimalString", () => {
  it.each([
    ["2.5e-6", "0.0000025"],
    ["1e-5", "0.00001"],
    [".5", "0.5"],
    ["-3.10", "-3.1"],
    ["-.05", "-0.05"],
    ["12", "12"],
    ["1e3", "1000"],
    ["1.234e2", "123.4"],
    ["0", "0"],
    ["-0.0", "0"],
    ["1e21", "1000000000000000000000"],
  ] as const)("%j prints as %j (no exponent)", (text, expected) => {
    expect(toDecimalString(decimal(text))).toBe(expected);
  });

  it("round-trips through decimal()", () => {
    const samples = [
      "2.5e-6",
      "0.0000025",
      "1e-5",
      ".5",
      "-3.10",
      "12",
      "1.5e-05",
      "3.75e-06",
      "1e-30",
      "-123456789.987654321",
      "1e25",
      "0",
    ];
    for (const text of samples) {
      const value = decimal(text);
      const printed = toDecimalString(value);
      expect(printed, text).not.toMatch(/[eE]/);
      expect(decimal(printed), text).toEqual(value);
      // and printing is stable
      expect(toDecimalString(decimal(printed)), text).toBe(printed);
    }
  });
});
