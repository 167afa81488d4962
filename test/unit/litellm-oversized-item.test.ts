import { describe, expect, it } from "vitest";
import { MAX_ITEM_DEPTH, MAX_ITEM_VALUES, OversizedItem, parseCallbackBody } from "../../src/litellm/callback-body.js";
import { firstNotKept } from "../../src/litellm/sanitise.js";
import { accepted, LIMITS, litellmPayload, rejected, STANDARD_LOGGING_PAYLOAD } from "../support/litellm-payloads.js";

describe("an item over the per-item bounds", () => {
  const wrapped = (id: string, requesterMetadata: string) => JSON.stringify(litellmPayload(id, "team-t")).replace('"metadata":{', `"metadata":{"requester_metadata":${requesterMetadata},`);

  it("is refused on its own, its key and billing fields read from its bytes, the rest of the batch read", () => {
    const tooMany = wrapped("too-many", `[${"0,".repeat(MAX_ITEM_VALUES)}0]`);
    const tooDeep = wrapped("too-deep", `${"[".repeat(MAX_ITEM_DEPTH + 1)}${"]".repeat(MAX_ITEM_DEPTH + 1)}`);
    const fine = JSON.stringify(litellmPayload("fine", "team-t"));
    const parsed = parseCallbackBody(`[${fine},${tooMany},${tooDeep}]`, LIMITS);
    if (!parsed.ok) throw new Error(parsed.message);
    expect(accepted(parsed.items[0]).idempotencyKey).toBe("fine");
    for (const [index, id, why] of [[1, "too-many", "more than 1000000 JSON values"], [2, "too-deep", "deeper than 128 levels"]] as const) {
      expect(parsed.items[index]).toBeInstanceOf(OversizedItem);
      const refusal = rejected(parsed.items[index]);
      expect(refusal).toMatchObject({ reason: "item_too_large", idempotencyKey: id });
      expect(refusal.issues[0]).toMatchObject({ message: expect.stringContaining(why) });
      // Its billing fields as a whole item's copy keeps them, and a marker replay refuses on.
      const copy = refusal.item as Record<string, any>;
      expect(copy.prompt_tokens).toBe(STANDARD_LOGGING_PAYLOAD.prompt_tokens);
      expect(copy.metadata.user_api_key_team_id).toBe("team-t");
      expect(firstNotKept(copy)).toMatchObject({ path: "(the item)", why: expect.stringContaining(why) });
    }
  });

  it("keeps what it can read of a billing field in bounds and leaves out one that is not", () => {
    const hugeModel = JSON.stringify({ id: "m", model: Array(20_000).fill("x"), prompt_tokens: 3, pad: Array(MAX_ITEM_VALUES).fill(0) });
    const parsed = parseCallbackBody(hugeModel, LIMITS);
    const copy = parsed.ok ? rejected(parsed.items[0]).item : null;
    expect(copy).toMatchObject({ id: "m", prompt_tokens: 3 });
    expect(copy).not.toHaveProperty("model");
    expect(copy).not.toHaveProperty("pad");
  });
});
