import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";

// The operator's own newer map, swapped in by a reload (SIGHUP calls reloadPriceBook): the
// bundled 1.81.13 map stands in for it, copied beside the book as an operator would put it.
const BUNDLED_MAP = fileURLToPath(new URL("../../config/litellm/model_prices_and_context_window.json", import.meta.url));
const directory = mkdtempSync(join(tmpdir(), "spend-ingest-cost-map-reload-"));
const book = join(directory, "pricing.yaml");
const writeBook = (map: string, version: string, date: string) =>
  writeFileSync(book, `credits_per_usd: 10000000\nunknown_models: quarantine\nlitellm_cost_map: {path: ${map}, version: "${version}", date: ${date}}\n`);
writeFileSync(join(directory, "older.json"), JSON.stringify({ "gpt-4o": { input_cost_per_token: 2.5e-6, output_cost_per_token: 1e-5 } }));
copyFileSync(BUNDLED_MAP, join(directory, "newer.json"));
const NEWER_SHA256 = createHash("sha256").update(readFileSync(BUNDLED_MAP)).digest("hex");
writeBook("older.json", "older", "2025-11-01");

const h = useServiceHarness({ PRICING_FILE: book });

// 1,000 × 5e-6 + 100 × 2.5e-5 = 0.0075 USD = 75,000 credits at claude-opus-4-6's 1.81.13 rates.
const opus = (id: string) =>
  litellmPayload(id, "team-cost-map", {
    model: "claude-opus-4-6",
    custom_llm_provider: "anthropic",
    model_map_information: null,
    response: {},
    prompt_tokens: 1000,
    completion_tokens: 100,
    response_cost: 0.0075,
  });

async function receipt(key: string) {
  const response = await h.admin("GET", `/v1/receipts/${encodeURIComponent(key)}`);
  return { status: response.statusCode, body: response.json() };
}

const costMapSeries = async () =>
  (await h.app.inject({ method: "GET", url: "/metrics" })).body.split("\n").filter((line) => line.startsWith("spend_ingest_cost_map_"));

describe("a newer cost map, swapped in by a reload", () => {
  it("prices a model the older map lacks from the next job on, and shows the map in force", async () => {
    expect(h.logs.find((line) => line.msg === "usage worker started")?.costMap).toMatchObject({ version: "older", date: "2025-11-01", entries: 1 });
    expect(await costMapSeries()).toEqual([
      expect.stringMatching(/^spend_ingest_cost_map_info\{version="older",date="2025-11-01",sha256="[0-9a-f]{64}"\} 1$/),
      expect.stringMatching(/^spend_ingest_cost_map_entries\{sha256="[0-9a-f]{64}"\} 1$/),
    ]);
    await h.postCallback([opus("opus-before")]);
    await h.drainQueue();
    expect((await receipt("opus-before")).status).toBe(404);
    expect(h.alerts("inv_unpriced_model").map((line) => line.idempotency_key)).toEqual(["opus-before"]);

    writeBook("newer.json", "LiteLLM 1.81.13 (69ee2c21)", "2026-02-16");
    expect(h.worker!.reloadPriceBook()).toBe(true);
    expect(h.logs.find((line) => line.msg === "price book reloaded")?.costMap).toEqual({
      path: join(directory, "newer.json"),
      version: "LiteLLM 1.81.13 (69ee2c21)",
      date: "2026-02-16",
      sha256: NEWER_SHA256,
      entries: 2_566,
    });
    // The older map's series is gone: one info series, the map in force.
    expect(await costMapSeries()).toEqual([
      `spend_ingest_cost_map_info{version="LiteLLM 1.81.13 (69ee2c21)",date="2026-02-16",sha256="${NEWER_SHA256}"} 1`,
      `spend_ingest_cost_map_entries{sha256="${NEWER_SHA256}"} 2566`,
    ]);

    await h.postCallback([opus("opus-after")]);
    await h.drainQueue();
    expect((await receipt("opus-after")).body).toMatchObject({ charged_credits: 75_000, rate_step: "cost_map", price_entry: "claude-opus-4-6" });
  });

  it("refuses a broken map on reload, naming the problem, and keeps the map in force", async () => {
    const before = await costMapSeries();
    // An error page saved where the map should be.
    writeFileSync(join(directory, "newer.json"), JSON.stringify({ message: "Not Found" }));
    expect(h.worker!.reloadPriceBook()).toBe(false);
    const failed = h.logs.filter((line) => line.msg === "price book reload failed; the current book stays");
    expect(failed).toHaveLength(1);
    expect((failed[0]!.err as { message: string }).message).toBe(`LiteLLM cost map ${join(directory, "newer.json")} entry "message" is not an object`);
    expect(await costMapSeries()).toEqual(before);

    await h.postCallback([opus("opus-after-refusal")]);
    await h.drainQueue();
    expect((await receipt("opus-after-refusal")).body).toMatchObject({ charged_credits: 75_000, price_entry: "claude-opus-4-6" });
  });
});

describe("a process that loads no price book", () => {
  const receiverAlone = useServiceHarness({}, { worker: false });

  it("shows no cost map series rather than a map of 0 entries", async () => {
    const metrics = (await receiverAlone.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics.split("\n").filter((line) => line.startsWith("spend_ingest_cost_map_"))).toEqual([]);
  });
});
