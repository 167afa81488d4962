import { describe, expect, it } from "vitest";
import { indexOrEnd, JsonScanner } from "../../src/platform/json-scan.js";
import { frameCallbackBody, readCallbackItem } from "../../src/litellm/callback-body.js";

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
