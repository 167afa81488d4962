import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { principalsOf } from "../../src/litellm/payer.js";

const HASH = createHash("sha256").update("sk-a-key-that-was-deleted").digest("hex");

describe("the key that paid, as recorded for enforcement", () => {
  const payload = (hash: unknown) => ({ metadata: { user_api_key_hash: hash, user_api_key_team_id: "team-a" } });

  it("is only a hash LiteLLM would accept back: anything else is left out, and the team still pays", () => {
    expect(principalsOf(payload(HASH))).toEqual({ keyHash: HASH, teamId: "team-a" });
    for (const notAHash of ["hash-of-team-a", HASH.slice(1), `${HASH}0`, `sk-${"a".repeat(20)}`, `${HASH.slice(0, 63)}g`, 12345]) {
      expect(principalsOf(payload(notAHash))).toEqual({ teamId: "team-a" });
    }
  });
});
