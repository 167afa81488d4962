import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { COST_MAP_MAX_BYTES, COST_MAP_MAX_DEPTH, COST_MAP_MAX_ENTRIES, COST_MAP_MAX_VALUES } from "../../src/pricing/cost-map.js";
import { loadPriceBook, type PriceBook, parsePriceBook, PriceBookError } from "../../src/pricing/price-book.js";

const BUNDLED_BOOK = fileURLToPath(new URL("../../config/pricing.yaml", import.meta.url));
const BUNDLED_MAP = fileURLToPath(new URL("../../config/litellm/model_prices_and_context_window.json", import.meta.url));

const dir = mkdtempSync(join(tmpdir(), "spend-ingest-cost-map-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PRICED = { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 };

/** A book naming `map.json` in the test's directory, with `text` written there (unless null). */
function bookWith(text: string | null, costMapField = "litellm_cost_map: map.json"): PriceBook {
  if (text !== null) writeFileSync(join(dir, "map.json"), text);
  return parsePriceBook(`credits_per_usd: 10000000\n${costMapField}\n`, { baseDirectory: dir });
}

function refusal(text: string | null, costMapField?: string): string {
  try {
    bookWith(text, costMapField);
  } catch (error) {
    expect(error).toBeInstanceOf(PriceBookError);
    return (error as Error).message;
  }
  throw new Error("expected the cost map to be refused");
}

describe("the bundled cost map", () => {
  it("is LiteLLM 1.81.13's, as config/pricing.yaml states, with claude-opus-4-6", () => {
    const book = loadPriceBook(BUNDLED_BOOK);
    expect(book.costMap).toEqual({
      path: BUNDLED_MAP,
      version: "LiteLLM 1.81.13 (69ee2c21)",
      date: "2026-02-16",
      sha256: createHash("sha256").update(readFileSync(BUNDLED_MAP)).digest("hex"),
      // 2,567 members, one of which is sample_spec.
      entries: 2_566,
    });
    expect(book.models.get("claude-opus-4-6")?.origin).toBe("litellm_cost_map");
  });
});

describe("a cost map's identity", () => {
  it("a bare path states no version or date; the sha256 and entry count are the file's", () => {
    const text = JSON.stringify({ sample_spec: { input_cost_per_token: "doc" }, a: PRICED, "image-only": { output_cost_per_image: 0.04 } });
    expect(bookWith(text).costMap).toEqual({
      path: join(dir, "map.json"),
      version: null,
      date: null,
      sha256: createHash("sha256").update(text).digest("hex"),
      entries: 2,
    });
  });

  it("an entry named __proto__ is counted and priced like any other", () => {
    const book = bookWith(`{"__proto__": ${JSON.stringify(PRICED)}, "a": ${JSON.stringify(PRICED)}}`);
    expect(book.costMap?.entries).toBe(2);
    expect(book.models.get("__proto__")?.origin).toBe("litellm_cost_map");
  });

  it("the object form states them", () => {
    const identity = bookWith(JSON.stringify({ a: PRICED }), "litellm_cost_map: {path: map.json, version: mine 2026-03, date: 2026-03-01}").costMap;
    expect(identity).toMatchObject({ version: "mine 2026-03", date: "2026-03-01", entries: 1 });
  });

  it("a book that names no map has none", () => {
    expect(parsePriceBook("credits_per_usd: 1\n", { baseDirectory: dir }).costMap).toBeNull();
  });

  it.each([
    ["litellm_cost_map: {path: map.json, date: 2026-02-30}", /litellm_cost_map.date: not a calendar date/],
    ["litellm_cost_map: {path: map.json, date: 16/02/2026}", /litellm_cost_map.date: a date, YYYY-MM-DD/],
    ['litellm_cost_map: {path: map.json, version: "a\\u001b[2Jb"}', /litellm_cost_map.version: printable ASCII/],
    [`litellm_cost_map: {path: map.json, version: ${"v".repeat(101)}}`, /litellm_cost_map.version: printable ASCII/],
    ["litellm_cost_map: {path: map.json, sha256: abc}", /litellm_cost_map/],
  ])("%s is refused", (field, message) => {
    expect(refusal(JSON.stringify({ a: PRICED }), field)).toMatch(message);
  });
});

describe("a cost map is checked whole before it is used", () => {
  const map = () => join(dir, "map.json");

  it.each([
    ["not JSON", '{"a": {"input_cost_per_token": 1e-6,', "is not JSON"],
    ["an array", JSON.stringify([PRICED]), "is not a JSON object"],
    ["a number", "42", "is not a JSON object"],
    ["an error page saved in its place", JSON.stringify({ message: "Not Found" }), 'entry "message" is not an object'],
    ["an entry that is an array", JSON.stringify({ a: PRICED, b: [] }), 'entry "b" is not an object'],
    ["empty", "{}", "has no model entries"],
    ["only sample_spec", JSON.stringify({ sample_spec: {} }), "has no model entries"],
    ["no entry priced per token", JSON.stringify({ "dall-e-3": { output_cost_per_image: 0.04 } }), "has no entry priced per token"],
  ])("%s is refused, naming the map", (_what, text, problem) => {
    const message = refusal(text);
    expect(message).toContain(`LiteLLM cost map ${map()}`);
    expect(message).toContain(problem);
  });

  it.each([
    ["a negative rate", { ...PRICED, cache_read_input_token_cost: -1e-7 }, "model bad field cache_read_input_token_cost: must not be negative"],
    ["a rate that is not a number", { ...PRICED, output_cost_per_token: "lots" }, "output_cost_per_token"],
    ["a rate that is a boolean", { ...PRICED, input_cost_per_token: true }, "model bad field input_cost_per_token: expected a number, got boolean"],
    ["a rate beyond a double", { ...PRICED, input_cost_per_token: "1e400x" }, "input_cost_per_token"],
  ])("%s in one entry refuses the whole map, naming the map, entry and field", (_what, entry, problem) => {
    const message = refusal(JSON.stringify({ good: PRICED, bad: entry }));
    expect(message).toContain(`LiteLLM cost map ${map()}: `);
    expect(message).toContain(problem);
  });

  it("a map over the byte bound is refused from its size, unread", () => {
    writeFileSync(map(), `{"a": ${JSON.stringify(PRICED)}, "pad": "${"x".repeat(COST_MAP_MAX_BYTES)}"}`);
    expect(refusal(null)).toMatch(new RegExp(`is \\d+ bytes, over the bound of ${COST_MAP_MAX_BYTES}$`));
  });

  it("a map over the value or depth bound is refused before it is parsed, one over the entry bound once read", () => {
    const members = (count: number, body: string) => `{${Array.from({ length: count }, (_, index) => `"m${index}":${body}`).join(",")}}`;
    expect(refusal(members(COST_MAP_MAX_ENTRIES + 1, "{}"))).toContain(`holds more than ${COST_MAP_MAX_ENTRIES} entries`);
    // Few entries, each holding many values; commas inside strings count for nothing.
    const junk = `{"input_cost_per_token":1e-6,"output_cost_per_token":2e-6,"note":"a,b:c{[","x":[${"0,".repeat(100)}0]}`;
    expect(refusal(members(Math.ceil(COST_MAP_MAX_VALUES / 100), junk))).toContain(`holds more than ${COST_MAP_MAX_VALUES} JSON values`);
    expect(bookWith(members(100, junk)).costMap?.entries).toBe(100);
    const nested = `{"a": ${JSON.stringify(PRICED)}, "deep": {"x": ${"[".repeat(COST_MAP_MAX_DEPTH)}${"]".repeat(COST_MAP_MAX_DEPTH)}}}`;
    expect(refusal(nested)).toContain(`nests deeper than ${COST_MAP_MAX_DEPTH} levels`);
  });

  it("a directory, a FIFO or text that is not UTF-8 is refused without hanging", () => {
    const directory = join(dir, "a-directory");
    mkdirSync(directory);
    expect(refusal(null, `litellm_cost_map: ${directory}`)).toContain("not a regular file");
    // Nothing ever writes to it: a blocking read would wait forever.
    const fifo = join(dir, "a-fifo");
    execFileSync("mkfifo", [fifo]);
    expect(refusal(null, `litellm_cost_map: ${fifo}`)).toContain("not a regular file");
    writeFileSync(map(), Buffer.concat([Buffer.from('{"a": {"input_cost_per_token": 1, "output_cost_per_token": 1, "x": "'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}')]));
    expect(refusal(null)).toContain("is not UTF-8 text");
  });
});
