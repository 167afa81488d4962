import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { replayQuarantined } from "../../src/ops/replay-quarantine.js";
import { type Harness, useServiceHarness } from "../support/harness.js";

/**
 * Payloads the real LiteLLM library (1.80.9) sent for real kinds of call, each with its own
 * response_cost. Each names its account in spend_logs_metadata, so these harnesses trust it, as
 * a gateway whose every key holder is a trusted backend would.
 */
const CAPTURED_DIR = fileURLToPath(new URL("../fixtures/litellm/captured/", import.meta.url));
const captured = (name: string): Record<string, unknown> & { id: string; response_cost: number } =>
  JSON.parse(readFileSync(join(CAPTURED_DIR, `${name}.json`), "utf8"));
const TRUSTED_BACKEND = { BILLING_ACCOUNT_FROM: "spend_logs_metadata,team" };

/**
 * What each call costs at the rates in its own model_map_value, over every term, in credits at
 * 1e7 per USD, worked by hand; `litellm` is LiteLLM's own figure where it bills another amount.
 */
const EXPECTED: Record<string, { credits: number; litellm?: number }> = {
  // 10,000 × 1.65e-7 + 2,000 × 6.6e-7 (Azure's entry, not OpenAI's) = 0.00297
  "azure-gpt-4o-mini": { credits: 29_700 },
  // 50 × 3e-6 + 4,000 one-hour writes × 6e-6 + 100 × 1.5e-5 = 0.02565
  "claude-3-5-sonnet-1h-cache-write": { credits: 256_500 },
  // 500 × 3e-6 + 200 × 1.5e-5 + 2 web searches × 0.01 (medium) = 0.0245; LiteLLM billed no search
  "claude-3-5-sonnet-web-search": { credits: 245_000, litellm: 45_000 },
  // above 200k: 10,000 × 6e-6 + 200,000 reads × 6e-7 + 5,000 writes × 7.5e-6 + 800 × 2.25e-5 = 0.2355
  "claude-sonnet-4-5-above-200k-with-cache": { credits: 2_355_000 },
  // 1,952 × 1.25e-6 + 2,048 reads × 3.125e-7 (Gemini's rate) + 1,700 (1,200 reasoning) × 1e-5 = 0.02008
  "gemini-2.5-pro-cached-and-thinking": { credits: 200_800 },
  // 200 × 2.5e-6 + 800 audio × 1e-4 + 100 × 1e-5 + 400 audio × 2e-4 = 0.1615; LiteLLM left out 100 text tokens
  "gpt-4o-audio-preview-audio-tokens": { credits: 1_615_000, litellm: 1_605_000 },
  // 10 × 2.5e-6 + 20 × 1e-5 = 0.000225 (LiteLLM's double: 0.00022500000000000002)
  "gpt-4o-plain-float-noise": { credits: 2_250 },
  // priority: 1,000 × 4.25e-6 + 200 × 1.7e-5 = 0.00765
  "gpt-4o-service-tier-priority": { credits: 76_500 },
  // 1,500 × 1.1e-6 + 900 (700 reasoning) × 4.4e-6 = 0.00561; LiteLLM billed 700 of the 900
  "o3-mini-reasoning": { credits: 56_100, litellm: 47_300 },
  // model_group gpt-4 routed to gpt-4o-mini: 10,000 × 1.5e-7 + 2,000 × 6e-7 = 0.0027
  "router-alias-gpt-4-to-gpt-4o-mini": { credits: 27_000 },
  // the deployment's own price: 10,000 × 1e-6 + 2,000 × 2e-6 = 0.014
  "router-deployment-custom-price-gpt-4o": { credits: 140_000 },
};

/** ceil(response_cost × 1e7) from its shortest text rounded to 15 significant digits, in bigint arithmetic. */
function litellmCredits(responseCost: number): bigint {
  const [mantissa, exponent] = responseCost.toExponential(14).split("e") as [string, string];
  const digits = BigInt(mantissa.replace(".", "").replace("-", ""));
  const power = Number(exponent) - 14 + 7; // digits × 10^power credits
  if (power >= 0) return digits * 10n ** BigInt(power);
  const unit = 10n ** BigInt(-power);
  return (digits + unit - 1n) / unit;
}

async function receipt(h: Harness, key: string) {
  const response = await h.admin("GET", `/v1/receipts/${encodeURIComponent(key)}`);
  return { status: response.statusCode, body: response.json() };
}

const divergenceLines = (h: Harness, key: string) => h.alerts("inv_price_divergence").filter((line) => line.idempotency_key === key);

describe("every captured LiteLLM call, posted through the receiver", () => {
  const h = useServiceHarness(TRUSTED_BACKEND);

  it("covers every file in captured/", () => {
    const files = readdirSync(CAPTURED_DIR).map((file) => file.replace(/\.json$/, ""));
    expect(files.sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it("charges the exact cost at the rates LiteLLM used, over every term, and says so where LiteLLM differs", async () => {
    const names = Object.keys(EXPECTED);
    const response = await h.postCallback(names.map(captured));
    expect(response.statusCode).toBe(202);
    await h.drainQueue();
    for (const name of names) {
      const payload = captured(name);
      const { credits, litellm } = EXPECTED[name]!;
      const { status, body } = await receipt(h, payload.id);
      expect(status, name).toBe(200);
      expect(body, name).toMatchObject({ charged_credits: credits, pricing_source: "price_book", rate_step: "gateway" });
      expect(BigInt(Math.round(Number(body.reported_cost_usd) * 1e7)), name).toBe(BigInt(litellm ?? credits));
      if (litellm === undefined) {
        // LiteLLM agrees: the charge is its own figure, normalised, to the credit.
        expect(BigInt(credits), name).toBe(litellmCredits(payload.response_cost));
        expect(divergenceLines(h, payload.id), name).toEqual([]);
      } else {
        expect(BigInt(litellm), name).toBe(litellmCredits(payload.response_cost));
        const lines = divergenceLines(h, payload.id);
        expect(lines, name).toHaveLength(1);
        expect(lines[0], name).toMatchObject({ charged_credits: credits, reported_credits: litellm, gateway_credits: credits, rate_step: "gateway" });
      }
    }
    const metrics = (await h.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toMatch(/^spend_ingest_price_divergence_total\{rate_step="gateway",action="price_book"\} 3$/m);
  });

  it("a redelivered call is not checked or alerted twice", async () => {
    const payload = { ...captured("o3-mini-reasoning"), id: "o3-redelivered" };
    for (const _ of [1, 2]) {
      await h.postCallback([payload]);
      await h.drainQueue();
    }
    expect(divergenceLines(h, payload.id)).toHaveLength(1);
  });

  it("keeps LiteLLM's double as the decimal it stands for on the receipt", async () => {
    const payload = captured("gpt-4o-plain-float-noise");
    expect(payload.response_cost).toBe(0.00022500000000000002);
    await h.postCallback([payload]);
    await h.drainQueue();
    expect((await receipt(h, payload.id)).body).toMatchObject({ reported_cost_usd: "0.000225", charged_credits: 2_250 });
  });
});

describe("an operator's entry for an alias wins over everything", () => {
  const directory = mkdtempSync(join(tmpdir(), "spend-ingest-alias-book-"));
  const costMap = fileURLToPath(new URL("../../config/litellm/model_prices_and_context_window.json", import.meta.url));
  const book = join(directory, "pricing.yaml");
  writeFileSync(
    book,
    `credits_per_usd: 10000000\nlitellm_cost_map: ${costMap}\nmodels:\n  gpt-4: {input_cost_per_token: 1e-6, output_cost_per_token: 1e-6}\n`,
  );
  const h = useServiceHarness({ ...TRUSTED_BACKEND, PRICING_FILE: book });

  it("the alias gpt-4 is charged at the operator's price, never at gpt-4's cost-map price or the routed model's", async () => {
    const payload = captured("router-alias-gpt-4-to-gpt-4o-mini");
    await h.postCallback([payload]);
    await h.drainQueue();
    // 10,000 × 1e-6 + 2,000 × 1e-6 = 0.012; the check still compares LiteLLM with its own rates: no divergence.
    expect((await receipt(h, payload.id)).body).toMatchObject({ charged_credits: 120_000, rate_step: "price_book", price_entry: "gpt-4" });
    expect(divergenceLines(h, payload.id)).toEqual([]);
  });
});

describe("on_divergence: quarantine, then the book fixed and the call replayed", () => {
  const directory = mkdtempSync(join(tmpdir(), "spend-ingest-divergence-book-"));
  const costMap = fileURLToPath(new URL("../../config/litellm/model_prices_and_context_window.json", import.meta.url));
  const book = join(directory, "pricing.yaml");
  const writeBook = (onDivergence: string) =>
    writeFileSync(book, `credits_per_usd: 10000000\non_divergence: ${onDivergence}\nlitellm_cost_map: ${costMap}\n`);
  writeBook("quarantine");
  const h = useServiceHarness({ ...TRUSTED_BACKEND, PRICING_FILE: book });

  it("holds the divergent call, charges the agreeing one, and charges the held one once after the fix", async () => {
    const divergent = captured("o3-mini-reasoning");
    const agreeing = captured("gpt-4o-service-tier-priority");
    await h.postCallback([divergent, agreeing]);
    await h.drainQueue();
    expect((await receipt(h, agreeing.id)).body).toMatchObject({ charged_credits: 76_500 });
    expect((await receipt(h, divergent.id)).status).toBe(404);
    const { rows } = await h.deps.database.pool.query("SELECT reason FROM quarantine WHERE idempotency_key = $1", [divergent.id]);
    expect(rows).toEqual([{ reason: "price_divergence" }]);
    // Held, and still said: the alert names both figures, though nothing was charged.
    expect(divergenceLines(h, divergent.id)).toEqual([
      expect.objectContaining({ charged_credits: null, gateway_credits: 56_100, reported_credits: 47_300, rate_step: "gateway" }),
    ]);

    writeBook("higher");
    expect(h.worker!.reloadPriceBook()).toBe(true);
    const replay = { billingAccountFrom: h.settings.billingAccountFrom, reason: "price_divergence", waitMs: 10_000 };
    expect(await replayQuarantined(h.deps.database.pool, h.deps.usageQueue, replay)).toMatchObject({ ran: true, report: { replayed: 1, charged: 1 } });
    await h.drainQueue();
    // higher: 56,100 at the rates against LiteLLM's 47,300.
    expect((await receipt(h, divergent.id)).body).toMatchObject({ charged_credits: 56_100, pricing_reason: "on_divergence: higher (the rates' cost)" });
    await replayQuarantined(h.deps.database.pool, h.deps.usageQueue, replay);
    await h.drainQueue();
    const { rows: receipts } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM charge_receipts WHERE idempotency_key = $1", [divergent.id]);
    expect(receipts[0].n).toBe(1);
  });
});

describe("LiteLLM 1.81.13's calls, and the modes and margin it added", () => {
  const DIR_1_81 = fileURLToPath(new URL("../fixtures/litellm-1.81.13/captured/", import.meta.url));
  // The harness's direct calls name no account: each is given one, as a trusted backend would.
  const captured181 = (name: string, id = `${name}-${Math.random().toString(36).slice(2)}`): Record<string, any> => {
    const payload = JSON.parse(readFileSync(join(DIR_1_81, `${name}.json`), "utf8"));
    payload.metadata.spend_logs_metadata = { billing_account_id: "acct-181" };
    return { ...payload, id };
  };
  const h = useServiceHarness(TRUSTED_BACKEND);

  async function chargeOf(payload: Record<string, any>) {
    await h.postCallback([payload]);
    await h.drainQueue();
    return receipt(h, payload.id);
  }

  it("covers every file of 1.81.13's captured/", () => {
    expect(readdirSync(DIR_1_81).sort()).toEqual(["gpt-4o-cached.json", "opus-4-6-base.json", "router-prefixed-model.json"]);
  });

  it("charges each call what LiteLLM charged, to the credit", async () => {
    // opus-4-6: 1,000 × 5e-6 + 500 × 2.5e-5 = 0.0175; gpt-4o cached: 952 × 2.5e-6 + 2,048 × 1.25e-6 + 400 × 1e-5 = 0.00894;
    // the Router's gpt-4o-mini: 10,000 × 1.5e-7 + 2,000 × 6e-7 = 0.0027
    for (const [name, credits] of [["opus-4-6-base", 175_000], ["gpt-4o-cached", 89_400], ["router-prefixed-model", 27_000]] as const) {
      const payload = captured181(name);
      const { status, body } = await chargeOf(payload);
      expect(status, name).toBe(200);
      expect(body, name).toMatchObject({ charged_credits: credits, rate_step: "gateway", litellm_margin_usd: null });
      expect(BigInt(credits), name).toBe(litellmCredits(payload.response_cost));
      expect(divergenceLines(h, payload.id), name).toEqual([]);
    }
  });

  it("a Router call's model is reported without the provider prefix 1.81 added, and kept as logged", async () => {
    const payload = captured181("router-prefixed-model");
    expect(payload.model).toBe("openai/gpt-4o-mini");
    expect((await chargeOf(payload)).body).toMatchObject({ model: "gpt-4o-mini", logged_model: "openai/gpt-4o-mini", model_group: "fast" });
    const older = { ...captured181("router-prefixed-model"), model: "gpt-4o-mini" };
    expect((await chargeOf(older)).body).toMatchObject({ model: "gpt-4o-mini", logged_model: "gpt-4o-mini" });
  });

  it("fast mode and US-only inference are charged their own rates, not the base rates LiteLLM logged", async () => {
    const withMode = (mode: Record<string, string>, responseCost: number): Record<string, any> => {
      const payload = captured181("opus-4-6-base");
      Object.assign(payload.metadata.usage_object, mode);
      return { ...payload, response_cost: responseCost, cost_breakdown: { ...payload.cost_breakdown, original_cost: responseCost, total_cost: responseCost } };
    };
    // fast: 1,000 × 3e-5 + 500 × 1.5e-4 = 0.105 (the base rates: 175,000, −83%)
    expect((await chargeOf(withMode({ speed: "fast" }, 0.105))).body).toMatchObject({ charged_credits: 1_050_000, rate_step: "cost_map", price_entry: "fast/claude-opus-4-6" });
    // US only: 1,000 × 5.5e-6 + 500 × 2.75e-5 = 0.01925 (the base rates: −9%)
    expect((await chargeOf(withMode({ inference_geo: "us" }, 0.01925))).body).toMatchObject({ charged_credits: 192_500, price_entry: "us/claude-opus-4-6" });
    const unknown = withMode({ speed: "turbo" }, 0.0175);
    expect((await chargeOf(unknown)).status).toBe(404);
    const { rows } = await h.deps.database.pool.query("SELECT reason, detail->>'message' AS message FROM quarantine WHERE idempotency_key = $1", [unknown.id]);
    expect(rows).toEqual([{ reason: "unpriced_model", message: expect.stringContaining('speed "turbo" has no rates of its own') }]);
  });

  it("LiteLLM's margin is compared before it, shown on the receipt and not billed", async () => {
    const payload = captured181("opus-4-6-base");
    // A 10% margin plus 0.001 fixed: LiteLLM's total 0.0175 + 0.00275.
    Object.assign(payload, { response_cost: 0.02025 });
    Object.assign(payload.cost_breakdown, { total_cost: 0.02025, margin_percent: 0.1, margin_fixed_amount: 0.001, margin_total_amount: 0.00275 });
    expect((await chargeOf(payload)).body).toMatchObject({ charged_credits: 175_000, reported_cost_usd: "0.02025", litellm_margin_usd: "0.00275", litellm_discount_usd: null });
    expect(divergenceLines(h, payload.id)).toEqual([]);
  });
});
