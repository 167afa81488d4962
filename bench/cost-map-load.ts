// What loading a price book costs with a cost map at and beyond the bounds of src/pricing/cost-map.ts:
// one load blocks the worker (a start or a SIGHUP). Run: node --expose-gc --import tsx bench/cost-map-load.ts
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { COST_MAP_MAX_BYTES, COST_MAP_MAX_DEPTH, COST_MAP_MAX_ENTRIES } from "../src/pricing/cost-map.js";
import { loadPriceBook } from "../src/pricing/price-book.js";

const BUNDLED = fileURLToPath(new URL("../config/litellm/model_prices_and_context_window.json", import.meta.url));
const members = (count: number, body: string) => `{${Array.from({ length: count }, (_, index) => `"m${index}":${body}`).join(",")}}`;
const priced = '{"input_cost_per_token":1e-6,"output_cost_per_token":2e-6,"cache_read_input_token_cost":1e-7}';
const manyValues = `{"input_cost_per_token":1e-6,"output_cost_per_token":2e-6${',"x":[]'.repeat(30)}}`;

const cases: Array<[string, string | null]> = [
  ["bundled (LiteLLM 1.81.13)", null],
  [`${COST_MAP_MAX_ENTRIES} empty entries (the entry bound)`, members(COST_MAP_MAX_ENTRIES, "{}")],
  [`${COST_MAP_MAX_ENTRIES} priced entries (the entry bound)`, members(COST_MAP_MAX_ENTRIES, priced)],
  ["6,500 entries of 30 empty arrays (near the value bound)", members(6_500, manyValues)],
  ["one string just under the byte bound", `{"m":${priced.slice(0, -1)},"x":"${"a".repeat(COST_MAP_MAX_BYTES - 200)}"}}`],
  ["2,000,000 empty entries (over the byte bound)", members(2_000_000, "{}")],
  [`${COST_MAP_MAX_ENTRIES * 2} empty entries (over the entry bound)`, members(COST_MAP_MAX_ENTRIES * 2, "{}")],
  [`nesting 100,000 deep (over ${COST_MAP_MAX_DEPTH})`, `{"m":${"[".repeat(100_000)}${"]".repeat(100_000)}}`],
];

const directory = mkdtempSync(join(tmpdir(), "spend-ingest-cost-map-bench-"));
const gc = (globalThis as { gc?: () => void }).gc;
try {
  for (const [name, text] of cases) {
    const map = text === null ? BUNDLED : join(directory, "map.json");
    if (text !== null) writeFileSync(map, text);
    writeFileSync(join(directory, "pricing.yaml"), `credits_per_usd: 1\nlitellm_cost_map: ${map}\n`);
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const started = performance.now();
    let outcome: string;
    try {
      outcome = `loaded, ${loadPriceBook(join(directory, "pricing.yaml")).costMap?.entries} entries`;
    } catch (error) {
      outcome = `refused: ${(error as Error).message.replaceAll(map, "<map>")}`;
    }
    const milliseconds = (performance.now() - started).toFixed(0);
    const heap = ((process.memoryUsage().heapUsed - heapBefore) / 2 ** 20).toFixed(0);
    console.log(`${name}: ${milliseconds} ms, heap +${heap} MiB, ${outcome}`);
  }
} finally {
  rmSync(directory, { recursive: true, force: true });
}
