import { describe, expect, it } from "vitest";
import { frameCallbackBody, parseCallbackBody } from "../../src/litellm/callback-body.js";
import { LIMITS, rejected, STANDARD_LOGGING_PAYLOAD } from "../support/litellm-payloads.js";

describe("parseCallbackBody", () => {
  it("tells json_array, single object and ndjson apart by the body", () => {
    expect(parseCallbackBody('[{"a":1},{"a":2}]', LIMITS)).toEqual({ ok: true, items: [{ a: 1 }, { a: 2 }] });
    expect(parseCallbackBody('{"a":1}', LIMITS)).toEqual({ ok: true, items: [{ a: 1 }] });
    expect(parseCallbackBody('{"a":1}\n\n{"a":2}\n', LIMITS)).toEqual({ ok: true, items: [{ a: 1 }, { a: 2 }] });
  });

  it("lets one bad ndjson line cost only itself", () => {
    const parsed = parseCallbackBody('{"a":1}\n{oops\n{"a":3}', LIMITS);
    expect(parsed.ok && parsed.items.length).toBe(3);
    if (parsed.ok) expect(rejected(parsed.items[1]).reason).toBe("invalid_json");
  });

  it("refuses an empty body or batch and a body that is not JSON", () => {
    expect(parseCallbackBody("  ", LIMITS)).toMatchObject({ ok: false, code: "empty_batch" });
    expect(parseCallbackBody("[]", LIMITS)).toMatchObject({ ok: false, code: "empty_batch" });
    expect(parseCallbackBody("<xml/>", LIMITS)).toMatchObject({ ok: false, code: "invalid_json" });
  });
});

describe("frameCallbackBody", () => {
  const bytes = (text: string) => Buffer.from(text, "utf8");
  const framedCount = (text: string, maxItems = 4096) => {
    const framed = frameCallbackBody(bytes(text), { maxItems });
    return framed.ok ? framed.items.length : framed.code;
  };

  it("counts an array's items and refuses more than the limit before anything is parsed", () => {
    const items = (n: number) => `[${Array(n).fill('{"id":"a,[{"}').join(",")}]`;
    expect(framedCount(items(4), 4)).toBe(4);
    expect(framedCount(items(5), 4)).toBe("too_many_items");
    // Commas and brackets inside strings, nested arrays and escaped quotes are not items.
    const nested = '[{"a":[1,2,3],"b":"x\\",\\"[,,"},{"c":{"d":[4,5]}}]';
    expect(JSON.parse(nested)).toHaveLength(2);
    expect(framedCount(nested, 2)).toBe(2);
    expect(framedCount("{}\n".repeat(5), 4)).toBe("too_many_items");
    // An array that never closes is counted all the same.
    expect(framedCount(`[${Array(5).fill("{}").join(",")}`, 4)).toBe("too_many_items");
    expect(framedCount(JSON.stringify(Array(512).fill(STANDARD_LOGGING_PAYLOAD)), 512)).toBe(512);
  });

  it("counts each item's values and depth on its own, however broken the item", () => {
    const framed = frameCallbackBody(bytes(`[{"a":[1,{}]} , [[["x"]]],{"b":NaN}]`), LIMITS);
    expect(framed.ok && framed.items.map(({ values, depth }) => ({ values, depth }))).toEqual([
      { values: 5, depth: 3 },
      { values: 4, depth: 3 },
      { values: 3, depth: 1 },
    ]);
    // A broken ndjson line cannot hide what follows inside an unterminated string, even after a backslash.
    for (const broken of ['{"id":"unterminated', '{"a":"\\']) {
      const lines = frameCallbackBody(bytes(`${broken}\n[${"{},".repeat(9)}{}]`), LIMITS);
      expect(lines.ok && lines.items[1]).toMatchObject({ values: 11, depth: 2 });
    }
    // Bare tokens count too: Python's NaN literals, numbers, separated by whitespace alone.
    const tokens = frameCallbackBody(bytes(`{}\n${"NaN ".repeat(10)}`), LIMITS);
    expect(tokens.ok && tokens.items[1]!.values).toBe(10);
  });

  it("refuses whole only a body it cannot frame", () => {
    expect(framedCount("<xml/>")).toBe("invalid_json");
    expect(framedCount('{"a":1} trailing')).toBe("invalid_json");
    expect(framedCount("[1,,2]")).toBe("invalid_json");
    expect(framedCount("[ ]")).toBe("empty_batch");
    // A byte-order mark is no JSON: the body is not framed, as JSON.parse would not read it.
    expect(framedCount(`\ufeff[{}]`)).toBe("invalid_json");
  });
});
