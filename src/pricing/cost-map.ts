import { createHash } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { JsonScanner } from "../platform/json-scan.js";
import { PriceBookError } from "./price-book-error.js";

/**
 * Which LiteLLM cost map a price book uses. Its version and date are not in the JSON, so the book
 * states them; the sha256 and the entry count are always the file's own.
 */
export type CostMapIdentity = {
  path: string;
  /** As the book states it (`litellm_cost_map.version`), e.g. "LiteLLM 1.81.13 (69ee2c21)"; null when unstated. */
  version: string | null;
  /** The upstream commit's date (`litellm_cost_map.date`, YYYY-MM-DD); null when unstated. */
  date: string | null;
  sha256: string;
  /** Model entries: the object's members but `sample_spec`, which documents the format. */
  entries: number;
};

export type CostMap = { identity: CostMapIdentity; text: string; entries: ReadonlyMap<string, Record<string, unknown>> };

/**
 * Bounds on a map an operator points at, about ten times LiteLLM 1.81.13's (1.3 MB, 2,566 entries,
 * 64,412 JSON values as platform/json-scan counts them, nesting 5 deep), judged from the bytes
 * before they are parsed (the entries once read). Loading blocks the worker while it runs: at these bounds it takes at most about a second (measured:
 * 25,000 entries of two rates, 650,000 values of junk, or a 16 MiB string), where a 64 MiB map of
 * empty objects took 15 s and 700 MB of heap, and one nested 32 million deep 23 s and 1.8 GB.
 */
export const COST_MAP_MAX_BYTES = 16 * 1024 * 1024;
export const COST_MAP_MAX_ENTRIES = 25_000;
export const COST_MAP_MAX_VALUES = 650_000;
export const COST_MAP_MAX_DEPTH = 32;
export const PRICE_BOOK_MAX_BYTES = 16 * 1024 * 1024;

/** Reads, bounds and checks the shape of a LiteLLM cost map; its rates are checked where they are read. */
export function readCostMap(path: string, stated: { version: string | null; date: string | null }): CostMap {
  const text = readBoundedText(path, "LiteLLM cost map", COST_MAP_MAX_BYTES);
  const refuse = (problem: string) => new PriceBookError(`LiteLLM cost map ${path} ${problem}`);
  // Counted over the bytes before anything is parsed, as a callback body is (platform/json-scan).
  const bytes = Buffer.from(text);
  const cost = new JsonScanner(bytes).spanCost(0, bytes.length);
  if (cost.values > COST_MAP_MAX_VALUES) throw refuse(`holds more than ${COST_MAP_MAX_VALUES} JSON values`);
  if (cost.depth > COST_MAP_MAX_DEPTH) throw refuse(`nests deeper than ${COST_MAP_MAX_DEPTH} levels`);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw refuse(`is not JSON: ${(error as Error).message}`);
  }
  if (typeof document !== "object" || document === null || Array.isArray(document)) throw refuse("is not a JSON object");
  // A Map, so that an entry named "__proto__" is an entry like any other.
  const entries = new Map<string, Record<string, unknown>>();
  for (const [name, entry] of Object.entries(document)) {
    if (name === "sample_spec") continue;
    // An error page saved in the map's place ({"message": "Not Found"}) is an object too.
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw refuse(`entry ${JSON.stringify(name.slice(0, 100))} is not an object`);
    entries.set(name, entry as Record<string, unknown>);
  }
  if (entries.size === 0) throw refuse("has no model entries");
  // Read within the value bound, so bounded; the entries are bounded on their own.
  if (entries.size > COST_MAP_MAX_ENTRIES) throw refuse(`holds more than ${COST_MAP_MAX_ENTRIES} entries`);
  const sha256 = createHash("sha256").update(text).digest("hex");
  return { identity: { path, ...stated, sha256, entries: entries.size }, text, entries };
}

/**
 * A file's text, refused past `maxBytes`. Only a regular file is read, and it is opened without
 * blocking: a FIFO or a device named by mistake would otherwise hang the read or never end it.
 */
export function readBoundedText(path: string, what: string, maxBytes: number): string {
  let descriptor: number;
  try {
    descriptor = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new PriceBookError(`cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
  try {
    const stat = fstatSync(descriptor);
    if (!stat.isFile()) throw new PriceBookError(`cannot read the ${what} ${path}: not a regular file`);
    if (stat.size > maxBytes) throw new PriceBookError(`the ${what} ${path} is ${stat.size} bytes, over the bound of ${maxBytes}`);
    // A file that grows while it is read is cut at the bound plus one byte, and refused.
    const buffer = Buffer.alloc(Math.min(stat.size, maxBytes) + 1);
    let length = 0;
    for (let read = -1; read !== 0 && length < buffer.length; length += read) {
      read = readSync(descriptor, buffer, length, buffer.length - length, null);
    }
    if (length > maxBytes) throw new PriceBookError(`the ${what} ${path} is over the bound of ${maxBytes} bytes`);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(buffer.subarray(0, length));
    } catch {
      throw new PriceBookError(`the ${what} ${path} is not UTF-8 text`);
    }
  } catch (error) {
    if (error instanceof PriceBookError) throw error;
    throw new PriceBookError(`cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  } finally {
    closeSync(descriptor);
  }
}
