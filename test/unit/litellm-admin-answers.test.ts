import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { AdminCall } from "../../src/litellm/admin-api.js";
import { unknownPrincipalIn } from "../../src/litellm/admin-answers.js";

const HASH = createHash("sha256").update("sk-a-key-that-was-deleted").digest("hex");
const block = (kind: AdminCall["kind"], principal: string): AdminCall => ({ kind, principal, action: "block" });
const proxyError = (message: string, type: string, code: string, param: string | null = "key") => ({ error: { message, type, param, code } });
const notInDatabase = (hash: string) =>
  proxyError(`Authentication Error, Invalid proxy server token passed. key=${hash}, not found in db. Create key via \`/key/generate\` call.`, "token_not_found_in_db", "401");

describe("LiteLLM's answers that end a block or unblock", () => {
  it("reads LiteLLM's own 'cannot exist' answers, each for the principal that was sent", () => {
    expect(unknownPrincipalIn(block("key", HASH), 401, notInDatabase(HASH))).toBe("key_not_in_database");
    expect(unknownPrincipalIn({ ...block("key", HASH), action: "unblock" }, 401, notInDatabase(HASH))).toBe("key_not_in_database");
    expect(unknownPrincipalIn(block("key", HASH), 404, proxyError(`Key ${HASH} not found`, "bad_request_error", "404"))).toBe("key_not_found");
    expect(unknownPrincipalIn(block("key", "not-a-hash"), 400, proxyError("Invalid key format.", "bad_request_error", "400"))).toBe("key_format_refused");
    expect(unknownPrincipalIn(block("team", "team-a"), 404, { detail: { error: "Team not found, passed team_id=team-a" } })).toBe("team_not_found");
  });

  it("retries every look-alike: a wrong master key, a proxy's or a wrong path's 404, another principal, another status", () => {
    const cases: Array<[AdminCall, number, unknown]> = [
      // A wrong master key starting with sk-: LiteLLM's very same 401, naming the hash of that key.
      [block("key", HASH), 401, notInDatabase(createHash("sha256").update("sk-wrong-master").digest("hex"))],
      [block("key", HASH), 401, proxyError("Authentication Error, LiteLLM Virtual Key expected. Received=****, expected to start with 'sk-'.", "auth_error", "401", "None")],
      [block("team", "team-a"), 401, notInDatabase(HASH)],
      [block("key", HASH), 404, { detail: "Not Found" }],
      [block("key", HASH), 404, proxyError("Route /key/block not found", "not_found_error", "404")],
      [block("key", HASH), 404, { error: "Route /key/block not found" }],
      [block("key", HASH), 404, `Key ${HASH} not found`],
      [block("key", HASH), 404, { detail: { error: `Key ${HASH} not found` } }],
      [block("key", HASH), 404, proxyError(`Key ${"0".repeat(64)} not found`, "bad_request_error", "404")],
      [block("key", HASH), 500, proxyError(`Key ${HASH} not found`, "bad_request_error", "500")],
      [block("key", HASH), 404, proxyError(`Key ${HASH} not found`, "bad_request_error", "401")],
      [block("key", HASH), 404, proxyError(`Key ${HASH} not found`, "bad_request_error", "404", "team_id")],
      [block("key", HASH), 401, { ...notInDatabase(HASH), error: { ...notInDatabase(HASH).error, type: "auth_error" } }],
      // LiteLLM accepts this key: a 400 for it says the request was changed on the way.
      [block("key", HASH), 400, proxyError("Invalid key format.", "bad_request_error", "400")],
      [block("key", "not-a-hash"), 400, proxyError("Invalid key format", "bad_request_error", "400")],
      [block("team", "team-a"), 404, { detail: { error: "Team not found, passed team_id=team-b" } }],
      [block("team", "team-a"), 404, { detail: { error: "Team not found, passed team_id=team-a", route: "x" } }],
      [block("team", "team-a"), 404, { detail: "Team not found, passed team_id=team-a" }],
      [block("team", "team-a"), 404, { detail: "Not Found" }],
      [block("team", "team-a"), 500, { detail: { error: "Team not found, passed team_id=team-a" } }],
      [block("team", "team-a"), 404, null],
    ];
    expect(cases.filter(([call, status, body]) => unknownPrincipalIn(call, status, body) !== null)).toEqual([]);
  });
});
