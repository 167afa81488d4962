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
  let inString = false;
  let inToken = false;
  for (let index = 0; index < bytes.length; index++) {
    const byte = bytes[index]!;
    if (inString) {
      if (byte === NEWLINE || byte === QUOTE) inString = false;
      else if (byte === BACKSLASH && bytes[index + 1] !== NEWLINE) index++;
      continue;
    }
    const tokenByte = isTokenByte(byte);
    if (tokenByte && !inToken) values++;
    inToken = tokenByte;
    if (byte === QUOTE) {
      inString = true;
      values++;
    } else if (byte === COMMA) {
      if (depth === 1 && itemDepth === 1) itemCommas++;
    } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
      if (itemDepth === -1) itemDepth = byte === OPEN_BRACKET ? 1 : 0;
      values++;
      depth++;
    } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) depth--;
    if (values > MAX_JSON_VALUES) {
      return { ok: false, code: "too_many_values", message: `the body holds more than ${MAX_JSON_VALUES} JSON values` };
    }
    if (itemCommas >= limits.maxItems) return tooManyItems(limits);
  }
  return { ok: true };
}

/** Bytes of a bare JSON token (a number, true, false, null, or Python's NaN and Infinity). */
function isTokenByte(byte: number): boolean {
  return (
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    byte === 0x2d || // -
    byte === 0x2b || // +
    byte === 0x2e // .
  );
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
