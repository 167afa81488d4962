import { describe, expect, it } from "vitest";
import { jsonbText, storableCopy } from "../../src/platform/db/client.js";

// What jsonbText must equal: every string made storable by a replacer.
const mended = (value: unknown) => JSON.stringify(value, (_key, inner: unknown) => (typeof inner === "string" ? storableCopy(inner) : inner));

describe("jsonbText", () => {
  it.each([
    ["plain text", { a: "b", n: 1, list: ["x", null, true] }],
    ["a NUL", { text: "a\u0000b" }],
    ["a lone high surrogate", { text: "a\ud83d" }],
    ["a lone low surrogate", ["x\uDE00"]],
    ["a NUL in a key", { "k\u0000": 1 }],
    ["a backslash before u0000 as text, not a NUL", { text: "\\u0000" }],
    ["a surrogate pair, kept", { text: "😀" }],
    ["nothing", undefined],
  ])("writes what mending every string writes: %s", (_name, value) => {
    expect(jsonbText(value)).toBe(mended(value ?? null));
  });

  it("mends what jsonb cannot hold", () => {
    expect(JSON.parse(jsonbText({ text: "a\u0000b\ud800" }))).toEqual({ text: "a\\u0000b\ufffd" });
  });
});
