import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { accepted } from "../support/litellm-payloads.js";

describe("what LiteLLM 1.81 adds", () => {
  const FIXTURES = new URL("../fixtures/litellm-1.81.13/captured/", import.meta.url);
  const captured = (name: string): Record<string, any> => JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), "utf8"));

  it("reads the mode of an Anthropic call from its usage, only where the provider set one", () => {
    const base = captured("opus-4-6-base");
    expect(base.metadata.usage_object).toMatchObject({ speed: null, inference_geo: null });
    const event = accepted(base);
    expect(event.speed).toBeUndefined();
    expect(event.inferenceGeo).toBeUndefined();
    const fast = structuredClone(base);
    Object.assign(fast.metadata.usage_object, { speed: "fast", inference_geo: "us" });
    expect(accepted(fast)).toMatchObject({ speed: "fast", inferenceGeo: "us" });
    // A value that is not storable text is passed over, never a reason to refuse the call.
    fast.metadata.usage_object.speed = { fast: true };
    expect(accepted(fast).speed).toBeUndefined();
  });

  it("takes LiteLLM's cost before its margin and discount from cost_breakdown, only where they changed it", () => {
    const base = captured("opus-4-6-base");
    expect(base.cost_breakdown).toMatchObject({ original_cost: 0.0175, margin_total_amount: 0, discount_amount: 0 });
    expect(accepted(base)).not.toHaveProperty("reportedOriginalCostUsd");
    const margined = { ...base, response_cost: 0.02025, cost_breakdown: { ...base.cost_breakdown, total_cost: 0.02025, margin_percent: 0.1, margin_fixed_amount: 0.001, margin_total_amount: 0.00275 } };
    expect(accepted(margined)).toMatchObject({ reportedCostUsd: "0.02025", reportedOriginalCostUsd: "0.0175", litellmMarginUsd: "0.00275" });
    expect(accepted(margined)).not.toHaveProperty("litellmDiscountUsd");
    const discounted = { ...base, response_cost: 0.01575, cost_breakdown: { ...base.cost_breakdown, discount_percent: 0.1, discount_amount: 0.00175 } };
    expect(accepted(discounted)).toMatchObject({ reportedOriginalCostUsd: "0.0175", litellmDiscountUsd: "0.00175" });
    // Without original_cost, it is worked back exactly from response_cost: a margin is never billed for a missing figure.
    const { original_cost: _, ...withoutOriginal } = margined.cost_breakdown;
    expect(accepted({ ...margined, cost_breakdown: withoutOriginal })).toMatchObject({ reportedOriginalCostUsd: "0.0175", litellmMarginUsd: "0.00275" });
    expect(accepted({ ...base, cost_breakdown: { original_cost: -1, margin_total_amount: 1 } })).toMatchObject({ reportedOriginalCostUsd: "0", litellmMarginUsd: "1" });
    // Figures that are not finite costs are passed over: the call is read as if it had none.
    for (const odd of [{ original_cost: 0.0175, margin_total_amount: "NaN" }, { original_cost: 0.0175, margin_total_amount: -0.1 }, "breakdown"]) {
      expect(accepted({ ...base, cost_breakdown: odd }), JSON.stringify(odd)).not.toHaveProperty("reportedOriginalCostUsd");
    }
  });
});
