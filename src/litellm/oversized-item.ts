import { CALLBACK_ITEM_SHAPE, type ObjectShape } from "./sanitise.js";
import { COLON, COMMA, JsonScanner, OPEN_BRACE, QUOTE, skipWhitespace } from "../platform/json-scan.js";
import { parsePythonJson } from "./python-json.js";

/**
 * A field of an oversized item is parsed only under this many values and levels: billing's
 * fields are scalars and small objects (LiteLLM's example payload holds about 300 values in
 * all), so a field past this is not one billing could read, and is left out of the copy.
 */
const FIELD_VALUES_READ = 10_000;
const FIELD_DEPTH_READ = 16;
// The longest field name billing reads is under 40 bytes; a longer key is not one of them.
const KEY_BYTES_READ = 64;

/**
 * The fields billing reads of an item too large to parse, taken from its bytes: its members are
 * walked without parsing them, and only those billing reads (and their members, for billing's
 * objects) are parsed, each when it is small. Cost: a scan over the item's bytes for each level
 * of billing's shape (three at most). Anything that is not an object where one should be ends
 * the walk of that object with what was read so far.
 */
export function billingFieldsOf(bytes: Uint8Array, start: number, end: number): Record<string, unknown> {
  return readObject(bytes, start, end, CALLBACK_ITEM_SHAPE);
}

function readObject(bytes: Uint8Array, start: number, end: number, shape: ObjectShape): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  const scanner = new JsonScanner(bytes);
  let at = skipWhitespace(bytes, start, end);
  if (bytes[at] !== OPEN_BRACE) return kept;
  at++;
  for (;;) {
    at = skipWhitespace(bytes, at, end);
    if (bytes[at] !== QUOTE) return kept;
    const key = scanner.value(at, end);
    if (!key.whole) return kept;
    const name = key.end - at <= KEY_BYTES_READ ? parsedOrUndefined(bytes, at, key.end) : undefined;
    at = skipWhitespace(bytes, key.end, end);
    if (bytes[at] !== COLON) return kept;
    const valueStart = skipWhitespace(bytes, at + 1, end);
    const value = scanner.value(valueStart, end);
    if (!value.whole) return kept;
    const fieldShape = typeof name === "string" && Object.hasOwn(shape.fields, name) ? shape.fields[name] : undefined;
    if (fieldShape !== undefined) {
      const field = name as string;
      if (typeof fieldShape === "object" && bytes[valueStart] === OPEN_BRACE) {
        kept[field] = readObject(bytes, valueStart, value.end, fieldShape);
      } else if (value.values <= FIELD_VALUES_READ && value.depth <= FIELD_DEPTH_READ) {
        const parsed = parsedOrUndefined(bytes, valueStart, value.end);
        // A later duplicate wins, as JSON.parse has it; one that cannot be read leaves none.
        if (parsed === undefined) delete kept[field];
        else kept[field] = parsed;
      } else {
        delete kept[field];
      }
    }
    at = skipWhitespace(bytes, value.end, end);
    if (bytes[at] !== COMMA) return kept;
    at++;
  }
}

function parsedOrUndefined(bytes: Uint8Array, start: number, end: number): unknown {
  try {
    return parsePythonJson(Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString("utf8"));
  } catch {
    return undefined;
  }
}


