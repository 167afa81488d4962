import { describe, expect, it } from "vitest";
import { indexOrEnd, JsonScanner } from "../../src/platform/json-scan.js";
import { frameCallbackBody, readCallbackItem } from "../../src/litellm/callback-body.js";
import { seededRandom } from "../support/random.js";

const bytes = (text: string) => Buffer.from(text);

describe("the JSON scanner's searches stay within what they are asked about", () => {
  it("indexOrEnd finds a byte before the limit, and never one past it", () => {
    const text = bytes('ab"cd\nef"');
    expect(indexOrEnd(text, 0x22, 0, text.length)).toBe(2);
    expect(indexOrEnd(text, 0x0a, 0, 5)).toBe(5);
    expect(indexOrEnd(text, 0x0a, 0, 6)).toBe(5);
    expect(indexOrEnd(text, 0x22, 3, 8)).toBe(8);
    expect(indexOrEnd(text, 0x22, 3, text.length)).toBe(8);
    expect(indexOrEnd(text, 0x22, 7, 7)).toBe(7);
  });

  it("a newline past a value's limit does not cut a string inside it, and one within it does", () => {
    const text = bytes('{"a":"x"}\n{"b":"y\nz"}');
    const scanner = new JsonScanner(text);
    expect(scanner.value(0, 9)).toMatchObject({ end: 9, whole: true, values: 3 });
    // Asked again from further on, with a newline inside the string this time.
    expect(scanner.value(10, text.length)).toMatchObject({ whole: false });
    // And back at the start with a fresh limit: what was learnt further on is not reused wrongly.
    expect(scanner.value(0, 9)).toMatchObject({ end: 9, whole: true });
  });

  it("an oversized item of many duplicate billing objects keeps the last, as JSON.parse would, in one pass", () => {
    const member = '"metadata":{"user_api_key_team_id":"t-old"}';
    const item = `{"id":"victim",${Array(1_000_001).fill(member).join(",")},"metadata":{"user_api_key_team_id":"t-last"}}`;
    const body = bytes(`[${item},{"id":"after","messages":"${"a".repeat(1_000_000)}"}]`);
    const framed = frameCallbackBody(body, { maxItems: 10 });
    if (!framed.ok) throw new Error(framed.message);
    const read = readCallbackItem(body, framed.items[0]!) as { billingFields: Record<string, unknown> };
    expect(read.billingFields).toEqual({ id: "victim", metadata: { user_api_key_team_id: "t-last" } });
  });
});

/**
 * Where a string that opens at `quote` ends, read one byte at a time: a backslash takes the
 * byte after it, unless that is a raw newline, which ends the string wherever it stands.
 */
function stringEndByteByByte(text: Uint8Array, quote: number): { end: number; whole: boolean } {
  for (let at = quote + 1; at < text.length; at++) {
    if (text[at] === 0x0a) return { end: at, whole: false };
    if (text[at] === 0x5c) {
      if (text[at + 1] === 0x0a) return { end: at + 1, whole: false };
      at++;
    } else if (text[at] === 0x22) {
      return { end: at + 1, whole: true };
    }
  }
  return { end: text.length, whole: false };
}

describe("the JSON scanner ends a string where a byte-by-byte reading does", () => {
  it("at every length around where its loop hands over to indexOf, escapes and newlines anywhere", () => {
    const random = seededRandom(29);
    // Quotes after even and odd runs of backslashes, raw newlines, a backslash before a newline.
    const pieces = ["é", "\\", '\\"', "\\\\", '\\\\"', '"', "\n", "\\\n", " "];
    const ends = new Set<number>();
    const mismatches: unknown[] = [];
    for (let round = 0; round < 3_000; round++) {
      let content = "";
      const length = Math.floor(random() * 150);
      while (content.length < length) content += random() < 0.93 ? "a" : pieces[Math.floor(random() * pieces.length)];
      const text = bytes(`"${content}`);
      const { end, whole } = new JsonScanner(text).value(0, text.length);
      const expected = stringEndByteByByte(text, 0);
      if (end !== expected.end || whole !== expected.whole) mismatches.push({ content, end, whole, expected });
      if (expected.whole) ends.add(expected.end);
    }
    expect(mismatches).toEqual([]);
    // Strings closed on both sides of the hand-over at 64 bytes.
    expect([...ends].some((end) => end < 60) && [...ends].some((end) => end > 70)).toBe(true);
  });
});
