import { describe, expect, it } from "vitest";
import { callTimeMs, reusedIdKey, reusedIdKeysNear, sameCall } from "../../src/books/call-identity.js";

describe("a call's identity under a repeated request id", () => {
  it("takes copies whose times are a millisecond apart (the spend log's rounding) for the same call, and no further", () => {
    const at = callTimeMs("2026-01-01T00:00:00.123Z")!;
    expect(sameCall(at, callTimeMs("2026-01-01T00:00:00.124Z"))).toBe(true);
    expect(sameCall(at, callTimeMs("2026-01-01T00:00:00.122Z"))).toBe(true);
    expect(sameCall(at, callTimeMs("2026-01-01T00:00:00.125Z"))).toBe(false);
    // Without a time on either side nothing tells them apart: the caller treats them as one call.
    expect(sameCall(at, callTimeMs(null))).toBeNull();
    expect(sameCall(callTimeMs("not a time"), at)).toBeNull();
  });

  it("keys a further call by its id and ISO time, and names the neighbours a copy may hold", () => {
    const at = callTimeMs("2026-01-01T00:00:42.123Z")!;
    expect(reusedIdKey("chatcmpl-1", at)).toBe("chatcmpl-1@2026-01-01T00:00:42.123Z");
    expect(reusedIdKeysNear("chatcmpl-1", at)).toEqual([
      "chatcmpl-1@2026-01-01T00:00:42.123Z",
      "chatcmpl-1@2026-01-01T00:00:42.122Z",
      "chatcmpl-1@2026-01-01T00:00:42.124Z",
    ]);
  });

  it("reads no time at the edge of JavaScript's range, where a neighbour could not be named", () => {
    expect(callTimeMs("+275760-09-13T00:00:00.000Z")).toBeNull();
    expect(callTimeMs("+275760-09-12T23:59:59.999Z")).not.toBeNull();
    expect(() => reusedIdKeysNear("x", callTimeMs("+275760-09-12T23:59:59.999Z")!)).not.toThrow();
  });
});
