import { describe, expect, it } from "vitest";
import { parseCallbackBody } from "../../src/litellm/callback-body.js";
import { normaliseCallbackItem } from "../../src/litellm/normalise.js";
import { accepted, DEFAULT_READ, LIMITS, litellmPayload, rejected } from "../support/litellm-payloads.js";

describe("Python's json.dumps literals", () => {
  it("costs only the item whose field went NaN or Infinity, naming the field", () => {
    const good = JSON.stringify(litellmPayload("finite-1", "t"));
    const bad = JSON.stringify(litellmPayload("nan-1", "t")).replace('"response_cost":0.00022500000000000002', '"response_cost":NaN');
    const infinite = JSON.stringify(litellmPayload("inf-1", "t")).replace('"prompt_tokens":10', '"prompt_tokens":-Infinity');
    expect(bad).toContain("NaN");
    expect(infinite).toContain("-Infinity");
    const parsed = parseCallbackBody(`[${good},${bad},${infinite}]`, LIMITS);
    if (!parsed.ok) throw new Error("the batch did not parse");
    expect(normaliseCallbackItem(parsed.items[0], DEFAULT_READ).ok).toBe(true);
    expect(rejected(parsed.items[1]).issues).toEqual([{ path: "response_cost", message: "NaN is not a finite number" }]);
    expect(rejected(parsed.items[2]).issues).toContainEqual({ path: "prompt_tokens", message: "-Infinity is not a finite number" });
  });

  it("leaves the same words inside strings alone, and ignores them where the field is not read", () => {
    const payload = { ...litellmPayload("words-1", "t"), model_parameters: { temperature: "NaN" }, note: "Infinity and NaN" };
    const text = JSON.stringify(payload).replace('"saved_cache_cost":0', '"saved_cache_cost":Infinity');
    expect(text).toContain('"saved_cache_cost":Infinity');
    const parsed = parseCallbackBody(text, LIMITS);
    if (!parsed.ok) throw new Error("the body did not parse");
    expect((parsed.items[0] as { note: string }).note).toBe("Infinity and NaN");
    expect(accepted(parsed.items[0]).idempotencyKey).toBe("words-1");
  });
});
