import { createHash } from "node:crypto";
import { parsePythonJson } from "./python-json.js";

/**
 * LiteLLM's generic_api callback sends one of three log formats, and sends ndjson with
 * `Content-Type: application/json`, so the body's shape decides which one it is.
 */
export type ParsedCallbackBody = { ok: true; items: unknown[] } | BodyRefusal;
export type BodyRefusal = { ok: false; code: string; message: string };

export type BodyLimits = { maxItems: number };

/**
 * Parsing costs up to 64 bytes of heap per JSON value (an empty object; measured on Node's
 * JSON.parse), so this many values bound one parse to 64 MB whatever the body's shape. LiteLLM's
 * example payload holds about 300 (keys included), so a 512-call batch is about 152,000.
 */
export const MAX_JSON_VALUES = 1_000_000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const NEWLINE = 0x0a;
const COMMA = 0x2c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * Judges a body's cost from its bytes, before anything is parsed: its JSON values (containers,
 * strings and bare tokens such as numbers and literals, outside strings) and, for a JSON array,
 * its items. Valid or not, every body is counted the same way: a raw newline cannot occur inside
 * a JSON string, so it always ends one (even right after a backslash), and a broken ndjson line
 * cannot hide the lines after it. UTF-8 continuation bytes are never ASCII, so bytes are enough.
 */
export function checkBodyCost(bytes: Uint8Array, limits: BodyLimits): { ok: true } | BodyRefusal {
  let values = 0;
  // The first container decides: an array's items are its depth-1 elements, one more than its
  // depth-1 commas. Anything before it (a BOM, odd whitespace) does not hide it.
  let itemDepth = -1;
  let itemCommas = 0;
  let depth = 0;
  let inToken = false;
  // Where the next raw newline is, found once and reused: strings are skipped with indexOf.
  let nextNewline = -1;
  for (let index = 0; index < bytes.length; index++) {
    const kind = BYTE_KINDS[bytes[index]!]!;
    if (kind === TOKEN) {
      if (!inToken && ++values > MAX_JSON_VALUES) return tooManyValues();
      inToken = true;
      continue;
    }
    inToken = false;
    if (kind === OTHER) continue;
    if (kind === STRING) {
      values++;
      if (nextNewline < index) nextNewline = indexOrEnd(bytes, NEWLINE, index);
      const end = stringEnd(bytes, index + 1, nextNewline);
      // After the closing quote; a newline that cut the string off is read next, as structure.
      index = bytes[end] === QUOTE ? end : end - 1;
    } else if (kind === SEPARATOR) {
      if (depth === 1 && itemDepth === 1) itemCommas++;
    } else if (kind === OPEN) {
      if (itemDepth === -1) itemDepth = bytes[index] === OPEN_BRACKET ? 1 : 0;
      values++;
      depth++;
    } else depth--;
    if (values > MAX_JSON_VALUES) return tooManyValues();
    if (itemCommas >= limits.maxItems) return tooManyItems(limits);
  }
  return { ok: true };
}

const [OTHER, TOKEN, STRING, SEPARATOR, OPEN, CLOSE] = [0, 1, 2, 3, 4, 5] as const;

/** What each byte is to the cost check, by a table: this loop runs over every byte of every body. */
const BYTE_KINDS = (() => {
  const kinds = new Uint8Array(256);
  // A bare JSON token: a number, true, false, null, or Python's NaN and Infinity.
  for (const byte of Buffer.from("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+.")) kinds[byte] = TOKEN;
  kinds[QUOTE] = STRING;
  kinds[COMMA] = SEPARATOR;
  kinds[OPEN_BRACE] = OPEN;
  kinds[OPEN_BRACKET] = OPEN;
  kinds[CLOSE_BRACE] = CLOSE;
  kinds[CLOSE_BRACKET] = CLOSE;
  return kinds;
})();

/**
 * Where a string that starts at `start` ends: its closing quote (one not escaped by an odd run of
 * backslashes), or the first raw newline, which no JSON string can hold, or the body's end.
 */
function stringEnd(bytes: Uint8Array, start: number, newline: number): number {
  for (let from = start; ; ) {
    const quote = indexOrEnd(bytes, QUOTE, from);
    if (newline < quote) return newline;
    if (quote === bytes.length) return quote;
    let backslashes = 0;
    while (quote - 1 - backslashes >= start && bytes[quote - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote;
    from = quote + 1;
  }
}

function indexOrEnd(bytes: Uint8Array, byte: number, from: number): number {
  const found = bytes.indexOf(byte, from);
  return found === -1 ? bytes.length : found;
}


function tooManyValues(): BodyRefusal {
  return { ok: false, code: "too_many_values", message: `the body holds more than ${MAX_JSON_VALUES} JSON values` };
}

function tooManyItems(limits: BodyLimits): BodyRefusal {
  return {
    ok: false,
    code: "too_many_items",
    message: `the batch holds more than ${limits.maxItems} items (LiteLLM sends 512 a batch by default); send smaller batches`,
  };
}

/** Parses a body `checkBodyCost` let through; ndjson lines are counted before they are split. */
export function parseCallbackBody(text: string, limits: BodyLimits): ParsedCallbackBody {
  const body = text.trim();
  if (body === "") return { ok: false, code: "empty_batch", message: "the body is empty" };
  const whole = parseJson(body);
  if (whole.ok) {
    if (typeof whole.value !== "object" || whole.value === null) {
      return { ok: false, code: "invalid_body", message: "the body must be a JSON array or object" };
    }
    const items = Array.isArray(whole.value) ? whole.value : [whole.value];
    if (items.length > limits.maxItems) return tooManyItems(limits);
    if (items.length === 0) return { ok: false, code: "empty_batch", message: "the batch has no items" };
    return { ok: true, items };
  }
  if (countLines(body) > limits.maxItems) return tooManyItems(limits);
  const lines = body.split("\n").filter((line) => line.trim() !== "");
  if (lines.length > 1) {
    const items = lines.map((line) => parseJson(line));
    if (items.some((item) => item.ok)) {
      // An unparseable line costs only itself: it is rejected by index like any bad item.
      return { ok: true, items: items.map((item, index) => (item.ok ? item.value : new UnparseableLine(lines[index]!))) };
    }
  }
  return { ok: false, code: "invalid_json", message: "the body is not JSON, a JSON array or newline-delimited JSON" };
}

function countLines(text: string): number {
  let lines = 1;
  for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) lines++;
  return lines;
}

/**
 * Stands in for an ndjson line that is not JSON, so the item is rejected with a clear reason.
 * Only its digest and size are kept: the line may hold prompt text.
 */
export class UnparseableLine {
  readonly sha256: string;
  readonly bytes: number;
  constructor(line: string) {
    this.sha256 = createHash("sha256").update(line).digest("hex");
    this.bytes = Buffer.byteLength(line);
  }
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: parsePythonJson(text) };
  } catch {
    return { ok: false };
  }
}
