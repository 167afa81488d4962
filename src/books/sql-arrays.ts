import { type Decimal, toDecimalString } from "../pricing/decimal.js";

/**
 * Array parameters of the charge path's statements as PostgreSQL's array text, written here:
 * node-pg turns a JS array into that text by running two replaces over every element
 * (escapeElement), a measurable share of the worker's CPU per event. A number's text (digits,
 * sign, point, exponent) needs no quotes at all, and most texts nothing escaped. PostgreSQL reads
 * the same values either way; null and undefined are NULL, as node-pg makes them, unquoted.
 */
export function numberArray(values: ReadonlyArray<number | bigint | null | undefined>): string {
  return `{${values.map((value) => (value === null || value === undefined ? "NULL" : String(value))).join(",")}}`;
}

/** Exact decimals as a numeric array parameter (numberArray's text, each as toDecimalString writes it). */
export function decimalArray(values: ReadonlyArray<Decimal | null | undefined>): string {
  return `{${values.map((value) => (value === null || value === undefined ? "NULL" : toDecimalString(value))).join(",")}}`;
}

// What array text escapes inside a quoted element; node-pg's escapeElement escapes the same two.
const ESCAPED = /[\\"]/;
const ESCAPED_ALL = /[\\"]/g;

/** Texts as a text (or any type's) array parameter: each quoted, escaped only where it holds `\` or `"`. */
export function textArray(values: ReadonlyArray<string | null | undefined>): string {
  return `{${values.map((value) => (value === null || value === undefined ? "NULL" : ESCAPED.test(value) ? `"${value.replace(ESCAPED_ALL, "\\$&")}"` : `"${value}"`)).join(",")}}`;
}
