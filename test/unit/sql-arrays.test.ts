import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { decimal } from "../../src/pricing/decimal.js";
import { decimalArray, numberArray, textArray } from "../../src/books/sql-arrays.js";

// node-pg's own array text for a JS array: what these helpers replace, value for value.
const { prepareValue } = createRequire(import.meta.url)("pg/lib/utils.js") as { prepareValue: (value: unknown) => string };
const pgArrayText = (values: unknown[]) => prepareValue(values);

describe("array parameters written directly", () => {
  it("texts: quoted, escaped as node-pg escapes them, null and undefined as NULL", () => {
    const values = ["plain", "", "NULL", "a,b {c}", 'quote "q"', "back\\slash \\x00ab", "é 😀", null, undefined];
    expect(textArray(values)).toBe(pgArrayText(values));
  });

  it("numbers and bigints: the text node-pg sends, unquoted", () => {
    const values = [0, -1, 2147483647, 9007199254740991n, -9007199254740991n, null, undefined];
    expect(numberArray(values)).toBe("{0,-1,2147483647,9007199254740991,-9007199254740991,NULL,NULL}");
  });

  it("decimals: exact, without exponent", () => {
    expect(decimalArray([decimal("2.5e-6"), decimal("-12.50"), null])).toBe("{0.0000025,-12.5,NULL}");
  });
});
