/**
 * A scan of JSON bytes that frames values and counts what parsing them would cost, without
 * parsing anything: strings are skipped with indexOf, everything else is read a byte at a time
 * through a table. Valid or not, bytes are read the same way: a raw newline cannot occur inside a
 * JSON string, so it always ends one (even right after a backslash). UTF-8 continuation bytes are
 * never ASCII, so bytes are enough.
 */
export type JsonCost = { values: number; depth: number };
/** `whole`: the value ended where JSON ends it, not cut off by a newline in a string or the limit. */
export type ScannedValue = JsonCost & { end: number; whole: boolean };

export const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const NEWLINE = 0x0a;
export const COMMA = 0x2c;
export const COLON = 0x3a;
export const OPEN_BRACKET = 0x5b;
export const CLOSE_BRACKET = 0x5d;
export const OPEN_BRACE = 0x7b;
export const CLOSE_BRACE = 0x7d;

const [OTHER, TOKEN, STRING, OPEN, CLOSE] = [0, 1, 2, 3, 4] as const;

/** What each byte is to the scan, by a table: this loop runs over every byte of every body. */
const BYTE_KINDS = (() => {
  const kinds = new Uint8Array(256);
  // A bare JSON token: a number, true, false, null, or Python's NaN and Infinity.
  for (const byte of Buffer.from("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+.")) kinds[byte] = TOKEN;
  kinds[QUOTE] = STRING;
  kinds[OPEN_BRACE] = OPEN;
  kinds[OPEN_BRACKET] = OPEN;
  kinds[CLOSE_BRACE] = CLOSE;
  kinds[CLOSE_BRACKET] = CLOSE;
  return kinds;
})();

/** Scans one body's bytes, front to back (see newlineBefore). */
export class JsonScanner {
  // What the last newline search learnt: no raw newline in [searchedFrom, newlineAt), and one at
  // newlineAt if newlineFound (else newlineAt is where that search was told to stop).
  private searchedFrom = 0;
  private newlineAt = -1;
  private newlineFound = false;
  constructor(readonly bytes: Uint8Array) {}

  /**
   * The first raw newline in [index, limit), or limit. A search never goes past the limit it is
   * given, and what it learnt is reused while the positions asked about move forward, so a scan
   * costs a pass over the bytes it is asked about, not over the rest of the body each time.
   */
  private newlineBefore(index: number, limit: number): number {
    const known = this.searchedFrom <= index && index <= this.newlineAt;
    if (known && (this.newlineFound || this.newlineAt >= limit)) return Math.min(this.newlineAt, limit);
    if (!known) this.searchedFrom = index;
    this.newlineAt = indexOrEnd(this.bytes, NEWLINE, known ? this.newlineAt : index, limit);
    this.newlineFound = this.newlineAt < limit;
    return this.newlineAt;
  }

  /**
   * One JSON value starting at `from` (after whitespace): a container up to its matching close, a
   * string up to its closing quote, a run of token bytes. `end` is just past it, or where it
   * starts when no value starts there. Its values are containers, strings (keys too) and bare
   * tokens; its depth, how deeply containers nest in it (0 for a scalar).
   */
  value(from: number, limit: number): ScannedValue {
    return this.scan(skipWhitespace(this.bytes, from, limit), limit, true);
  }

  /** The cost of everything in bytes[from, limit), however broken: one ndjson line, say. */
  spanCost(from: number, limit: number): JsonCost {
    const { values, depth } = this.scan(from, limit, false);
    return { values, depth };
  }

  private scan(from: number, limit: number, oneValue: boolean): ScannedValue {
    const bytes = this.bytes;
    let values = 0;
    let depth = 0;
    let deepest = 0;
    let inToken = false;
    for (let index = from; index < limit; index++) {
      const kind = BYTE_KINDS[bytes[index]!]!;
      if (kind === TOKEN) {
        if (!inToken) values++;
        inToken = true;
        continue;
      }
      if (inToken && oneValue && depth === 0) return { end: index, values, depth: deepest, whole: true };
      inToken = false;
      if (kind === OTHER) {
        if (oneValue && depth === 0) return { end: index, values, depth: deepest, whole: false };
        continue;
      }
      if (kind === STRING) {
        values++;
        const end = stringEnd(bytes, index + 1, this.newlineBefore(index, limit), limit);
        // After the closing quote; a newline that cut the string off is read next, as structure.
        const closed = end < limit && bytes[end] === QUOTE;
        if (!closed && oneValue) return { end, values, depth: deepest, whole: false };
        index = closed ? end : end - 1;
      } else if (kind === OPEN) {
        values++;
        if (++depth > deepest) deepest = depth;
      } else if (depth > 0) {
        depth--;
      } else if (oneValue) {
        // A closer where a value should start: no value here.
        return { end: index, values, depth: deepest, whole: false };
      }
      if (oneValue && depth === 0) return { end: index + 1, values, depth: deepest, whole: true };
    }
    return { end: limit, values, depth: deepest, whole: inToken && depth === 0 };
  }
}

/**
 * Where a string that starts at `start` ends: its closing quote (one not escaped by an odd run of
 * backslashes), or the first raw newline, which no JSON string can hold, or the limit.
 */
function stringEnd(bytes: Uint8Array, start: number, newline: number, limit: number): number {
  // Most strings (keys, ids, labels) are short: read in a loop, they cost less than one call to
  // indexOf would. A string longer than that is searched with indexOf from where the loop stopped.
  const looped = Math.min(start + LOOPED_STRING_BYTES, newline);
  for (let at = start; at < looped; at++) {
    if (bytes[at] === QUOTE && !isEscaped(bytes, start, at)) return at;
  }
  if (looped === newline) return newline;
  for (let from = looped; ; ) {
    const quote = indexOrEnd(bytes, QUOTE, from, limit);
    if (newline < quote) return newline;
    if (quote === limit) return quote;
    if (!isEscaped(bytes, start, quote)) return quote;
    from = quote + 1;
  }
}

const LOOPED_STRING_BYTES = 64;

/** Whether the quote at `quote` is escaped: preceded by an odd run of backslashes, back to `start`. */
function isEscaped(bytes: Uint8Array, start: number, quote: number): boolean {
  let backslashes = 0;
  while (quote - 1 - backslashes >= start && bytes[quote - 1 - backslashes] === BACKSLASH) backslashes++;
  return backslashes % 2 === 1;
}

export function indexOrEnd(bytes: Uint8Array, byte: number, from: number, limit: number): number {
  if (from >= limit) return limit;
  // Searched within the limit only: a search that ran on to the body's end from every one of a
  // million small values would make one body cost minutes.
  const found = limit < bytes.length ? bytes.subarray(from, limit).indexOf(byte) : bytes.indexOf(byte, from);
  return found === -1 ? limit : limit < bytes.length ? from + found : found;
}

/** JSON's whitespace: space, tab, newline, carriage return. */
export function isWhitespace(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

export function skipWhitespace(bytes: Uint8Array, from: number, limit: number): number {
  let at = from;
  while (at < limit && isWhitespace(bytes[at])) at++;
  return at;
}

export function trimmedEnd(bytes: Uint8Array, from: number, limit: number): number {
  let at = limit;
  while (at > from && isWhitespace(bytes[at - 1])) at--;
  return at;
}
