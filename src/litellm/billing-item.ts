import { CLOSE_BRACE, CLOSE_BRACKET, COLON, COMMA, OPEN_BRACE, OPEN_BRACKET, QUOTE } from "../platform/json-scan.js";
import { UnparseableItem } from "./item-markers.js";
import { parsePythonJson } from "./python-json.js";
import { CALLBACK_ITEM_SHAPE, type ObjectShape } from "./sanitise.js";

/**
 * An item as billing reads it, from its bytes: the fields of billing's shape (CALLBACK_ITEM_SHAPE)
 * and nothing else, each value exactly as parsePythonJson would give it, or an UnparseableItem
 * when parsePythonJson would refuse the item. Every byte is still checked as JSON, so the same
 * items are refused, but prompt and response text and the metadata billing never reads are
 * passed over, not built: that parse was most of the receiver's work per event.
 *
 * Whatever reads an item reads only the fields of that shape (sanitise.ts keeps the same ones
 * for replay), so every reader gives the same answer on this object as on the whole parse. As
 * JSON.parse has it, a later duplicate key wins; a key is matched as decoded, escapes and all.
 * Only an item that is an object is read this way; any other is parsed whole.
 */
export function billingItemOf(bytes: Uint8Array, start: number, end: number): unknown {
  // A Buffer for its decoders; the body the receiver reads already is one.
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const reader = new ItemReader(buffer, start, end);
  try {
    reader.skipWhitespace();
    if (buffer[reader.at] !== OPEN_BRACE) return parsedWhole(buffer, start, end);
    const item = reader.object(CALLBACK_ITEM_SHAPE);
    reader.skipWhitespace();
    if (reader.at !== end) throw NOT_JSON;
    return item;
  } catch (error) {
    if (error !== NOT_JSON) throw error;
    return new UnparseableItem(bytes.subarray(start, end));
  }
}

function parsedWhole(bytes: Buffer, start: number, end: number): unknown {
  try {
    return parsePythonJson(bytes.toString("utf8", start, end));
  } catch {
    return new UnparseableItem(bytes.subarray(start, end));
  }
}

/** Thrown, never returned, at the first byte that makes the item not JSON: the rare path. */
const NOT_JSON = Symbol("not JSON");

const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;

// A byte that may stand in a string as itself: not a control character, a quote or a backslash.
const PLAIN_STRING_BYTE = (() => {
  const plain = new Uint8Array(256).fill(1);
  for (let byte = 0; byte < 0x20; byte++) plain[byte] = 0;
  plain[QUOTE] = 0;
  plain[BACKSLASH] = 0;
  return plain;
})();

/**
 * The bytes a bare token is made of: python-json.ts quotes NaN, Infinity and -Infinity only
 * where they stand alone between bytes outside this set, so a token is a whole run of them.
 */
const TOKEN_BYTE = (() => {
  const token = new Uint8Array(256);
  for (const byte of Buffer.from("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.+-")) token[byte] = 1;
  return token;
})();

const SIMPLE_ESCAPES = new Set([...'"\\/bfnrt'].map((char) => char.charCodeAt(0)));
const HEX_DIGIT = (() => {
  const hex = new Uint8Array(256);
  for (const byte of Buffer.from("0123456789abcdefABCDEF")) hex[byte] = 1;
  return hex;
})();

const LITERALS = ["true", "false", "null"].map((text) => Buffer.from(text));
// Read as the strings of their names (python-json.ts), wherever a string may stand, keys too.
const NON_FINITE = ["NaN", "Infinity", "-Infinity"].map((text) => Buffer.from(text));

type Field = { name: string; bytes: Uint8Array; shape: ObjectShape | null };
/** An object shape's fields by the byte length of their names, so a key is compared without decoding it. */
type FieldIndex = { byLength: Field[][]; byName: Map<string, Field> };
const fieldIndexes = new WeakMap<ObjectShape, FieldIndex>();

function fieldIndexOf(shape: ObjectShape): FieldIndex {
  let index = fieldIndexes.get(shape);
  if (index !== undefined) return index;
  index = { byLength: [], byName: new Map() };
  for (const [name, fieldShape] of Object.entries(shape.fields)) {
    const field = { name, bytes: Buffer.from(name), shape: typeof fieldShape === "object" ? fieldShape : null };
    (index.byLength[field.bytes.length] ??= []).push(field);
    index.byName.set(name, field);
  }
  fieldIndexes.set(shape, index);
  return index;
}

/**
 * A recursive descent over one item's bytes that checks JSON's grammar (JSON.parse's, with
 * python-json.ts's bare NaN and Infinity) and builds only the fields of a shape. Its recursion
 * is as deep as the item nests, which MAX_ITEM_DEPTH bounds before an item is read.
 */
class ItemReader {
  constructor(
    readonly bytes: Buffer,
    public at: number,
    readonly end: number,
  ) {}

  /** The members of billing's shape in the object at `at`; the rest is checked and passed over. */
  object(shape: ObjectShape): Record<string, unknown> {
    const { bytes, end } = this;
    const fields = fieldIndexOf(shape);
    const kept: Record<string, unknown> = {};
    this.at++;
    this.skipWhitespace();
    if (bytes[this.at] === CLOSE_BRACE) {
      this.at++;
      return kept;
    }
    for (;;) {
      const field = this.key(fields);
      this.skipWhitespace();
      if (bytes[this.at] !== COLON) throw NOT_JSON;
      this.at++;
      this.skipWhitespace();
      const valueStart = this.at;
      if (field === undefined) this.value();
      else if (field.shape !== null && bytes[valueStart] === OPEN_BRACE) kept[field.name] = this.object(field.shape);
      else kept[field.name] = this.parsedValue();
      this.skipWhitespace();
      const next = bytes[this.at];
      this.at++;
      if (next === CLOSE_BRACE) return kept;
      if (next !== COMMA || this.at >= end) throw NOT_JSON;
      this.skipWhitespace();
    }
  }

  /** Reads the key at `at`: the field of the shape it names, if any. */
  private key(fields: FieldIndex): Field | undefined {
    const { bytes } = this;
    const start = this.at;
    if (bytes[start] !== QUOTE) {
      // A bare NaN or Infinity is a key named so, and no field of billing's is.
      this.nonFiniteToken();
      return undefined;
    }
    const escaped = this.string();
    const candidates = fields.byLength[this.at - start - 2];
    if (!escaped) {
      if (candidates === undefined) return undefined;
      for (const field of candidates) if (bytesEqual(bytes, start + 1, field.bytes)) return field;
      return undefined;
    }
    return fields.byName.get(JSON.parse(bytes.toString("utf8", start, this.at)) as string);
  }

  /**
   * The value at `at`, as parsePythonJson gives it: scalars decoded from their bytes (most of
   * what billing reads is short text and numbers), containers parsed whole once checked.
   */
  private parsedValue(): unknown {
    const { bytes } = this;
    const start = this.at;
    const first = bytes[start];
    if (first === QUOTE) {
      const escaped = this.string();
      if (escaped) return JSON.parse(bytes.toString("utf8", start, this.at));
      return this.at - start <= SHORT_TEXT_BYTES ? shortText(bytes, start + 1, this.at - 1) : bytes.toString("utf8", start + 1, this.at - 1);
    }
    if (first === OPEN_BRACE || first === OPEN_BRACKET) {
      this.value();
      return parsePythonJson(bytes.toString("utf8", start, this.at));
    }
    this.token();
    const text = shortText(bytes, start, this.at);
    // Checked as JSON's number grammar, where Number() reads as JSON.parse does (1e400 too).
    if (first === MINUS || (first! >= ZERO && first! <= NINE)) return text === "-Infinity" ? text : Number(text);
    return text === "true" ? true : text === "false" ? false : text === "null" ? null : text;
  }

  /** Checks the value at `at` and moves past it. */
  value(): void {
    const byte = this.bytes[this.at];
    if (byte === QUOTE) this.string();
    else if (byte === OPEN_BRACE) this.skippedObject();
    else if (byte === OPEN_BRACKET) this.array();
    else this.token();
  }

  private skippedObject(): void {
    const { bytes, end } = this;
    this.at++;
    this.skipWhitespace();
    if (bytes[this.at] === CLOSE_BRACE) {
      this.at++;
      return;
    }
    for (;;) {
      if (bytes[this.at] === QUOTE) this.string();
      else this.nonFiniteToken();
      this.skipWhitespace();
      if (bytes[this.at] !== COLON) throw NOT_JSON;
      this.at++;
      this.skipWhitespace();
      this.value();
      this.skipWhitespace();
      const next = bytes[this.at];
      this.at++;
      if (next === CLOSE_BRACE) return;
      if (next !== COMMA || this.at >= end) throw NOT_JSON;
      this.skipWhitespace();
    }
  }

  private array(): void {
    const { bytes, end } = this;
    this.at++;
    this.skipWhitespace();
    if (bytes[this.at] === CLOSE_BRACKET) {
      this.at++;
      return;
    }
    for (;;) {
      this.value();
      this.skipWhitespace();
      const next = bytes[this.at];
      this.at++;
      if (next === CLOSE_BRACKET) return;
      if (next !== COMMA || this.at >= end) throw NOT_JSON;
      this.skipWhitespace();
    }
  }

  /** Moves past the string whose opening quote is at `at`; whether it holds an escape. */
  private string(): boolean {
    const { bytes, end } = this;
    let at = this.at + 1;
    let escaped = false;
    for (;;) {
      // Four bytes a step while all four are plain: most of an item's bytes are its text.
      while (at + 4 <= end && (PLAIN_STRING_BYTE[bytes[at]!]! & PLAIN_STRING_BYTE[bytes[at + 1]!]! & PLAIN_STRING_BYTE[bytes[at + 2]!]! & PLAIN_STRING_BYTE[bytes[at + 3]!]!) === 1) at += 4;
      while (at < end && PLAIN_STRING_BYTE[bytes[at]!] === 1) at++;
      if (at >= end) throw NOT_JSON;
      const byte = bytes[at]!;
      if (byte === QUOTE) break;
      if (byte !== BACKSLASH) throw NOT_JSON; // a raw control character
      escaped = true;
      const escape = bytes[at + 1]!;
      if (SIMPLE_ESCAPES.has(escape)) at += 2;
      else if (escape === 0x75 && HEX_DIGIT[bytes[at + 2]!] && HEX_DIGIT[bytes[at + 3]!] && HEX_DIGIT[bytes[at + 4]!] && HEX_DIGIT[bytes[at + 5]!] && at + 5 < end) at += 6;
      else throw NOT_JSON;
    }
    this.at = at + 1;
    return escaped;
  }

  /** A bare token: a number, true, false, null, or NaN, Infinity, -Infinity. */
  private token(): void {
    const start = this.at;
    const end = this.tokenEnd();
    if (isNumber(this.bytes, start, end)) return;
    if (LITERALS.some((literal) => tokenIs(this.bytes, start, end, literal))) return;
    if (NON_FINITE.some((literal) => tokenIs(this.bytes, start, end, literal))) return;
    throw NOT_JSON;
  }

  private nonFiniteToken(): void {
    const start = this.at;
    const end = this.tokenEnd();
    if (!NON_FINITE.some((literal) => tokenIs(this.bytes, start, end, literal))) throw NOT_JSON;
  }

  private tokenEnd(): number {
    const { bytes, end } = this;
    let at = this.at;
    while (at < end && TOKEN_BYTE[bytes[at]!] === 1) at++;
    this.at = at;
    return at;
  }

  skipWhitespace(): void {
    const { bytes, end } = this;
    let at = this.at;
    for (; at < end; at++) {
      const byte = bytes[at];
      if (byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) break;
    }
    this.at = at;
  }
}

/** JSON's number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, exactly the bytes [start, end). */
function isNumber(bytes: Uint8Array, start: number, end: number): boolean {
  let at = start;
  if (at < end && bytes[at] === MINUS) at++;
  if (at >= end) return false;
  if (bytes[at] === ZERO) at++;
  else if (isDigit(bytes[at])) at = digitsEnd(bytes, at, end);
  else return false;
  if (at < end && bytes[at] === 0x2e) {
    const fraction = at + 1;
    at = digitsEnd(bytes, fraction, end);
    if (at === fraction) return false;
  }
  if (at < end && (bytes[at] === 0x65 || bytes[at] === 0x45)) {
    at++;
    if (at < end && (bytes[at] === 0x2b || bytes[at] === MINUS)) at++;
    const exponent = at;
    at = digitsEnd(bytes, exponent, end);
    if (at === exponent) return false;
  }
  return at === end;
}

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= ZERO && byte <= NINE;
}

function digitsEnd(bytes: Uint8Array, from: number, end: number): number {
  let at = from;
  while (at < end && isDigit(bytes[at])) at++;
  return at;
}

function tokenIs(bytes: Uint8Array, start: number, end: number, literal: Uint8Array): boolean {
  return end - start === literal.length && bytesEqual(bytes, start, literal);
}

function bytesEqual(bytes: Uint8Array, start: number, expected: Uint8Array): boolean {
  for (let index = 0; index < expected.length; index++) if (bytes[start + index] !== expected[index]) return false;
  return true;
}

// Below this, text is decoded here rather than by Buffer's decoder, whose call costs more than the bytes.
const SHORT_TEXT_BYTES = 64;

/** The text of bytes [start, end), decoded as UTF-8; short ASCII text without a call into Node's decoder. */
function shortText(bytes: Buffer, start: number, end: number): string {
  let text = "";
  for (let at = start; at < end; at++) {
    const byte = bytes[at]!;
    if (byte >= 0x80) return bytes.toString("utf8", start, end);
    text += String.fromCharCode(byte);
  }
  return text;
}
