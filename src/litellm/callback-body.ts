import { parsePythonJson } from "./python-json.js";
import { CLOSE_BRACKET, COMMA, JsonScanner, OPEN_BRACE, OPEN_BRACKET, skipWhitespace, trimmedEnd, type JsonCost } from "../platform/json-scan.js";
import { OversizedItem, UnparseableItem } from "./item-markers.js";
import { billingFieldsOf } from "./oversized-item.js";

export { OversizedItem, UnparseableItem } from "./item-markers.js";

/**
 * LiteLLM's generic_api callback sends one of three log formats, and sends ndjson with
 * `Content-Type: application/json`, so the body's shape decides which one it is.
 */
/** A body refused whole, by its code in the receiver's error catalog. */
export type BodyRefusal = { ok: false; code: "empty_batch" | "invalid_json" | "too_many_items"; message: string };
export type BodyLimits = { maxItems: number };
/** Where one item's bytes are in the body, and what parsing them would cost. */
export type ItemSpan = JsonCost & { start: number; end: number };
export type FramedBody = { ok: true; items: ItemSpan[] } | BodyRefusal;
export type ParsedCallbackBody = { ok: true; items: unknown[] } | BodyRefusal;

/**
 * One item is parsed only under this many JSON values: parsing costs up to 64 bytes of heap a
 * value (an empty object; measured on Node's JSON.parse), so one parse stays under 64 MB. Items
 * are parsed one at a time, so this bounds the parse of a whole body too. LiteLLM's example
 * payload holds about 300; a caller's own metadata or tools are what could pass it.
 */
export const MAX_ITEM_VALUES = 1_000_000;
/**
 * Nor past this many levels of nesting. LiteLLM's own payload nests 5 deep, a tool's JSON schema
 * at OpenAI's limit of 10 nested objects about 26; JSON.stringify, which some code may walk an
 * item with, gives up in the thousands.
 */
export const MAX_ITEM_DEPTH = 128;

const NEWLINE = 0x0a;

/**
 * Splits a body into its items from the bytes, before anything is parsed, and counts each one's
 * cost: the elements of a JSON array, one JSON object, or the lines of ndjson. Only a body that
 * cannot be framed (no array, object or lines), or that holds more items than the limit, is
 * refused whole; what is wrong inside one item costs only that item.
 */
export function frameCallbackBody(bytes: Uint8Array, limits: BodyLimits): FramedBody {
  const start = skipWhitespace(bytes, 0, bytes.length);
  const end = trimmedEnd(bytes, start, bytes.length);
  if (start === end) return { ok: false, code: "empty_batch", message: "the body is empty" };
  const scanner = new JsonScanner(bytes);
  if (bytes[start] === OPEN_BRACKET) {
    const array = arrayItems(scanner, start, end, limits);
    if (array !== null) return array;
  } else if (bytes[start] === OPEN_BRACE) {
    const whole = scanner.value(start, end);
    if (whole.whole && whole.end === end) return { ok: true, items: [{ start, end, values: whole.values, depth: whole.depth }] };
  }
  if (bytes.subarray(start, end).includes(NEWLINE)) return ndjsonItems(new JsonScanner(bytes), start, end, limits);
  return unreadableBody();
}

/** The elements of a JSON array spanning [start, end), or null when the body is not one. */
function arrayItems(scanner: JsonScanner, start: number, end: number, limits: BodyLimits): FramedBody | null {
  const bytes = scanner.bytes;
  const items: ItemSpan[] = [];
  let at = skipWhitespace(bytes, start + 1, end);
  if (bytes[at] === CLOSE_BRACKET) return at === end - 1 ? { ok: false, code: "empty_batch", message: "the batch has no items" } : null;
  for (;;) {
    const itemStart = skipWhitespace(bytes, at, end);
    const item = scanner.value(itemStart, end);
    if (!item.whole) return null;
    if (items.length === limits.maxItems) return tooManyItems(limits);
    items.push({ start: itemStart, end: item.end, values: item.values, depth: item.depth });
    at = skipWhitespace(bytes, item.end, end);
    if (bytes[at] === COMMA) at++;
    else if (bytes[at] === CLOSE_BRACKET && at === end - 1) return { ok: true, items };
    else return null;
  }
}

/** The lines of ndjson; a line that is not JSON is still an item, refused on its own. */
function ndjsonItems(scanner: JsonScanner, start: number, end: number, limits: BodyLimits): FramedBody {
  const bytes = scanner.bytes;
  const items: ItemSpan[] = [];
  for (let lineStart = start; lineStart < end; ) {
    const newline = bytes.indexOf(NEWLINE, lineStart);
    const lineEnd = newline === -1 || newline > end ? end : newline;
    const itemStart = skipWhitespace(bytes, lineStart, lineEnd);
    const itemEnd = trimmedEnd(bytes, itemStart, lineEnd);
    if (itemStart < itemEnd) {
      if (items.length === limits.maxItems) return tooManyItems(limits);
      items.push({ start: itemStart, end: itemEnd, ...scanner.spanCost(itemStart, itemEnd) });
    }
    lineStart = lineEnd + 1;
  }
  return { ok: true, items };
}

/**
 * One item as billing reads it: the parsed value, an `UnparseableItem` when its bytes are not
 * JSON, or an `OversizedItem`, never parsed whole, when it is over MAX_ITEM_VALUES or MAX_ITEM_DEPTH.
 */
export function readCallbackItem(bytes: Uint8Array, span: ItemSpan): unknown {
  const why = span.values > MAX_ITEM_VALUES
    ? `holds more than ${MAX_ITEM_VALUES} JSON values`
    : span.depth > MAX_ITEM_DEPTH
      ? `nests deeper than ${MAX_ITEM_DEPTH} levels`
      : null;
  if (why !== null) return new OversizedItem(why, span.end - span.start, billingFieldsOf(bytes, span.start, span.end));
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + span.start, span.end - span.start);
  try {
    return parsePythonJson(text.toString("utf8"));
  } catch {
    return new UnparseableItem(text);
  }
}

/**
 * The whole body read at once, for the ops CLI's files: framed, each item read, and refused
 * (`invalid_json`) when no item is JSON.
 */
export function parseCallbackBody(text: string | Uint8Array, limits: BodyLimits): ParsedCallbackBody {
  const bytes = typeof text === "string" ? Buffer.from(text, "utf8") : text;
  const framed = frameCallbackBody(bytes, limits);
  if (!framed.ok) return framed;
  const items = framed.items.map((span) => readCallbackItem(bytes, span));
  return nothingReadable(items) ?? { ok: true, items };
}

/** The refusal of a body none of whose items is JSON, or null. */
function nothingReadable(items: readonly unknown[]): BodyRefusal | null {
  return items.every((item) => item instanceof UnparseableItem) ? unreadableBody() : null;
}

/** A body that is not an array, an object or lines of JSON, or none of whose items is JSON. */
export function unreadableBody(): BodyRefusal {
  return { ok: false, code: "invalid_json", message: "the body is not a JSON array, a JSON object or newline-delimited JSON" };
}

function tooManyItems(limits: BodyLimits): BodyRefusal {
  return {
    ok: false,
    code: "too_many_items",
    message: `the batch holds more than ${limits.maxItems} items (LiteLLM sends 512 a batch by default); send smaller batches`,
  };
}
