import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { replayQuarantined } from "../../src/ops/replay-quarantine.js";
import { listQuarantined } from "../../src/books/quarantine.js";
import { useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";

// LiteLLM's own cost map (shipped in config/) as the base, with one operator override.
const COST_MAP = fileURLToPath(new URL("../../config/litellm/model_prices_and_context_window.json", import.meta.url));
const BOOK = `credits_per_usd: 10000000
markup: 1.0
unknown_models: reported_cost
free_models: ["*:free", "test-free-model"]
litellm_cost_map: ${COST_MAP}
models:
  gpt-4o: {input_cost_per_token: 2.5e-6, output_cost_per_token: 1.0e-5, cache_read_input_token_cost: 1.25e-6}
`;
const pricingFile = join(mkdtempSync(join(tmpdir(), "spend-ingest-book-")), "pricing.yaml");
writeFileSync(pricingFile, BOOK);

const h = useServiceHarness({ PRICING_FILE: pricingFile });

async function receipt(key: string) {
  const response = await h.admin("GET", `/v1/receipts/${encodeURIComponent(key)}`);
  return { status: response.statusCode, body: response.json() };
}

const call = (id: string, fields: Record<string, unknown>) =>
  litellmPayload(id, "team-pricing", { model_map_information: null, response: {}, ...fields });

describe("pricing through the pipeline, exact to the credit", () => {
  it("prices OpenAI and Anthropic calls with cache reads, writes, long contexts, cache hits, free aliases", async () => {
    const response = await h.postCallback([
      // OpenAI shape in metadata.usage_object; model found without its provider prefix.
      // 600 × 1.5e-7 + 400 × 7.5e-8 + 200 × 6e-7 = 0.00024 USD = 2,400 credits.
      call("openai-cached", {
        model: "openai/gpt-4o-mini",
        prompt_tokens: 1000,
        completion_tokens: 200,
        metadata: { usage_object: { prompt_tokens: 1000, completion_tokens: 200, prompt_tokens_details: { cached_tokens: 400 } } },
      }),
      // Anthropic shape in hidden_params.usage_object.
      // 2,000 × 3e-6 + 6,000 × 3e-7 + 2,000 × 3.75e-6 + 500 × 1.5e-5 = 0.0228 USD = 228,000 credits.
      call("anthropic-cached", {
        model: "claude-3-5-sonnet-20241022",
        prompt_tokens: 10000,
        completion_tokens: 500,
        hidden_params: { usage_object: { cache_read_input_tokens: 6000, cache_creation_input_tokens: 2000 } },
      }),
      // Over 200k prompt tokens: the _above_200k_tokens rates price the whole call, cache rates included.
      // 190,000 × 6e-6 + 50,000 × 6e-7 + 10,000 × 7.5e-6 + 1,000 × 2.25e-5 = 1.2675 USD = 12,675,000 credits.
      call("anthropic-long", {
        model: "anthropic/claude-sonnet-4-20250514",
        prompt_tokens: 250000,
        completion_tokens: 1000,
        response: { usage: { cache_read_input_tokens: 50000, cache_creation_input_tokens: 10000 } },
      }),
      call("hit_cache_hit1", { model: "gpt-4o", cache_hit: true, response_cost: 0.5 }),
      call("free-alias", { model_group: "my-alias", model: "test-free-model", model_map_information: null, response_cost: 0.01 }),
      // 1 × 2.5e-6 + 1 × 1e-5 from the override = 125 credits.
      call("override", { model: "gpt-4o", prompt_tokens: 1, completion_tokens: 1 }),
    ]);
    expect(response.statusCode).toBe(202);
    await h.drainQueue();

    const expected: Record<string, { charged_credits: number; pricing_source: string; provider_cost_usd: string }> = {
      "openai-cached": { charged_credits: 2400, pricing_source: "price_book", provider_cost_usd: "0.00024" },
      "anthropic-cached": { charged_credits: 228000, pricing_source: "price_book", provider_cost_usd: "0.0228" },
      "anthropic-long": { charged_credits: 12675000, pricing_source: "price_book", provider_cost_usd: "1.2675" },
      "hit_cache_hit1": { charged_credits: 0, pricing_source: "cache_hit", provider_cost_usd: "0" },
      "free-alias": { charged_credits: 0, pricing_source: "free", provider_cost_usd: "0" },
      override: { charged_credits: 125, pricing_source: "price_book", provider_cost_usd: "0.0000125" },
    };
    for (const [key, fields] of Object.entries(expected)) {
      expect({ key, ...(await receipt(key)).body }).toMatchObject({ key, ...fields });
    }
    expect((await receipt("anthropic-long")).body).toMatchObject({
      price_entry: "claude-sonnet-4-20250514",
      cache_read_tokens: 50000,
      cache_write_tokens: 10000,
    });
  });

  it("rejects a call whose cost went NaN at the door, and keeps the rest of the batch", async () => {
    const good = JSON.stringify(call("finite-cost", { model: "gpt-4o" }));
    const bad = JSON.stringify(call("nan-cost", { model: "gpt-4o", response_cost: 1 })).replace('"response_cost":1', '"response_cost":NaN');
    const response = await h.postCallback(`[${good},${bad}]`);
    expect(response.statusCode).toBe(207);
    expect(response.json()).toMatchObject({
      accepted: 1,
      rejected: [{ index: 1, id: "nan-cost", reason: "invalid_payload", issues: [{ path: "response_cost", message: "NaN is not a finite number" }] }],
    });
  });

  it("quarantines an unknown model reported at $0, then charges it once by replay after the book is fixed", async () => {
    const unknown = call("unknown-zero", { model: "acme/secret-model", response_cost: 0, prompt_tokens: 10, completion_tokens: 20 });
    await h.postCallback([unknown]);
    await h.drainQueue();
    expect((await receipt("unknown-zero")).status).toBe(404);
    const pending = await listQuarantined(h.deps.database.pool, { reason: "unpriced_model", limit: 10 });
    expect(pending.map((row) => row.idempotencyKey)).toEqual(["unknown-zero"]);
    expect(h.alerts("inv_unpriced_model")).toEqual([
      expect.objectContaining({ idempotency_key: "unknown-zero", model: "acme/secret-model", model_group: null }),
    ]);
    expect(h.alerts("event_quarantined").filter((line) => line.idempotency_key === "unknown-zero")).toHaveLength(1);

    // Replayed before the fix: refused again, still pending, alerted again as a new refusal.
    await replayQuarantined(h.deps.database.pool, h.deps.usageQueue, { billingAccountFrom: h.settings.billingAccountFrom, reason: "unpriced_model", waitMs: 0 });
    await h.drainQueue();
    expect((await listQuarantined(h.deps.database.pool, { reason: "unpriced_model", limit: 10 })).length).toBe(1);
    expect(h.alerts("inv_unpriced_model").filter((line) => line.idempotency_key === "unknown-zero")).toHaveLength(2);
    const hashBefore = (await receipt("override")).body.price_book_hash;

    writeFileSync(pricingFile, `${BOOK}  secret-model: {input_cost_per_token: 1e-6, output_cost_per_token: 2e-6}\n`);
    expect(h.worker!.reloadPriceBook()).toBe(true);
    const replay = await replayQuarantined(h.deps.database.pool, h.deps.usageQueue, { billingAccountFrom: h.settings.billingAccountFrom, reason: "unpriced_model", waitMs: 10_000 });
    expect(replay).toMatchObject({ ran: true, report: { replayed: 1, charged: 1 } });
    await h.drainQueue();
    // 10 × 1e-6 + 20 × 2e-6 = 0.00005 USD = 500 credits.
    const charged = await receipt("unknown-zero");
    expect(charged.body).toMatchObject({ charged_credits: 500, pricing_source: "price_book", price_entry: "secret-model" });
    expect(charged.body.price_book_hash).not.toBe(hashBefore);
    // A receipt written under the old book keeps its price and the book that priced it.
    expect((await receipt("override")).body).toMatchObject({ charged_credits: 125, price_book_hash: hashBefore });

    // Replayed again, and the original delivered again: still one charge.
    expect(await replayQuarantined(h.deps.database.pool, h.deps.usageQueue, { billingAccountFrom: h.settings.billingAccountFrom, reason: "unpriced_model", waitMs: 0 })).toMatchObject({
      ran: true,
      report: { replayed: 0, refusedBeforeSending: 0 },
    });
    await h.postCallback([unknown]);
    await h.drainQueue();
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM ledger_entries WHERE reference = 'unknown-zero'");
    expect(rows[0].n).toBe(1);
  });

  it("keeps the current book when a reload finds a broken one", async () => {
    writeFileSync(pricingFile, `${BOOK}  broken: {input_cost_per_token: abc, output_cost_per_token: 1e-6}\n`);
    expect(h.worker!.reloadPriceBook()).toBe(false);
    expect(h.logs.some((line) => line.msg === "price book reload failed; the current book stays")).toBe(true);
    await h.postCallback([call("after-broken-reload", { model: "gpt-4o", prompt_tokens: 1, completion_tokens: 1 })]);
    await h.drainQueue();
    expect((await receipt("after-broken-reload")).body.charged_credits).toBe(125);
  });
});
