import { type Decimal, toDecimalString } from "../pricing/decimal.js";

/**
 * An int or numeric array parameter as PostgreSQL's array text, written here: node-pg turns a JS
 * array into that text by quoting and escaping every element (escapeElement), which a number's
 * text (digits, sign, point, exponent) never needs, at a measurable share of the worker's CPU per
 * event. PostgreSQL reads the same values either way; NULL stays unquoted, so it stays NULL.
 */
export function numberArray(values: ReadonlyArray<number | bigint | null>): string {
  return `{${values.map((value) => (value === null ? "NULL" : String(value))).join(",")}}`;
}

/** Exact decimals as a numeric array parameter (numberArray's text, each as toDecimalString writes it). */
export function decimalArray(values: ReadonlyArray<Decimal | null>): string {
  return `{${values.map((value) => (value === null ? "NULL" : toDecimalString(value))).join(",")}}`;
}
