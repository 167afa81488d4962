import { describe, expect, it } from "vitest";
import { idempotencyKeyOf } from "../../src/litellm/normalise.js";
import { useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { seededRandom } from "../support/random.js";

const h = useServiceHarness();

const BODIES = 5000;


type Body = { payload: string | Buffer; contentType: string; items?: unknown[] };

function generator(seed: number) {
  const next = seededRandom(seed);
  const int = (below: number) => Math.floor(next() * below);
  const pick = <T>(choices: T[]): T => choices[int(choices.length)]!;
  let serial = 0;

  const strings = [
    "", "NaN", "Infinity", "-Infinity", "None", "null", "0", "1e999", "\u0000", "\\u0000", "🙂", "\ud800", "a\udc00b",
    "x".repeat(5000), `a${"😀".repeat(600)}`, "0000-01-01 00:00:00", "2025-02-30 10:00:00", "2025-01-24 09:20:46.847371",
  ];
  const numbers = [0, -1, 1.5, 2 ** 31, 2 ** 53 + 1, 1e308, -1e308, 5e-324, 3_000_000_000, 1e30, 42];
  const value = (depth: number): unknown => {
    const kind = int(depth > 3 ? 4 : 6);
    if (kind === 0) return pick(numbers);
    if (kind === 1) return pick(strings);
    if (kind === 2) return pick([true, false, null]);
    if (kind === 3) return int(1e9);
    if (kind === 4) return Array.from({ length: int(4) }, () => value(depth + 1));
    return Object.fromEntries(Array.from({ length: int(4) }, () => [pick(["a", "id", "model", "usage", "prompt_tokens"]), value(depth + 1)]));
  };
  // Deep nesting is written into the text at the end: building it as objects would overflow
  // this test's own stack before the receiver ever saw it.
  const DEEP = "__deep_nesting__";
  const deepText = (text: string) => text.replaceAll(`"${DEEP}"`, () => {
    const levels = 1000 + int(20_000);
    return `${"[".repeat(levels)}1${"]".repeat(levels)}`;
  });
  const fields = [
    "id", "litellm_call_id", "status", "cache_hit", "model", "model_group", "model_map_information", "prompt_tokens",
    "completion_tokens", "response_cost", "startTime", "endTime", "end_user", "metadata", "hidden_params", "response",
  ];
  const payload = (): Record<string, unknown> => {
    serial += 1;
    const item: Record<string, unknown> = litellmPayload(`fuzz-${seed}-${serial}`, next() < 0.8 ? `fuzz-acct-${int(20)}` : null, {
      response: { usage: { prompt_tokens: 10, completion_tokens: 20 } },
      // Fields billing does not use may hold anything without costing the call its charge.
      end_user: next() < 0.2 ? pick(strings) : "",
    });
    for (let change = int(4); change > 0; change--) {
      const field = pick(fields);
      const roll = next();
      if (roll < 0.2) delete item[field];
      else if (roll < 0.4) item[field] = pick(numbers);
      else if (roll < 0.55) item[field] = pick(strings);
      else if (roll < 0.65 && field !== "id" && field !== "litellm_call_id") item[field] = DEEP;
      else item[field] = value(0);
    }
    return item;
  };
  const withLiteral = (text: string) =>
    deepText(next() < 0.3 ? text.replace(/"response_cost":[^,}]+/, `"response_cost":${pick(["NaN", "Infinity", "-Infinity"])}`) : text);

  return (): Body => {
    const roll = next();
    if (roll < 0.45) {
      const items = Array.from({ length: 1 + int(5) }, payload);
      return { payload: withLiteral(JSON.stringify(items)), contentType: "application/json", items };
    }
    if (roll < 0.55) {
      const item = payload();
      return { payload: deepText(JSON.stringify(item)), contentType: "application/json", items: [item] };
    }
    if (roll < 0.65) {
      const items: unknown[] = Array.from({ length: 2 + int(4) }, () => (next() < 0.2 ? "{broken" : payload()));
      const lines = items.map((item) => (typeof item === "string" ? item : deepText(JSON.stringify(item))));
      return { payload: lines.join("\n"), contentType: pick(["application/json", "application/x-ndjson"]), items };
    }
    if (roll < 0.75) return { payload: JSON.stringify(value(0)), contentType: "application/json" };
    if (roll < 0.8) {
      const levels = 1000 + int(100_000);
      return { payload: `${"[".repeat(levels)}${"]".repeat(levels)}`, contentType: "application/json" };
    }
    if (roll < 0.85) return { payload: pick(["", " ", "[]", "{}", "null", "[[]]", "[null]"]), contentType: "application/json" };
    if (roll < 0.9) {
      return { payload: Buffer.from([0x5b, 0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc3, 0x22, 0x7d, 0x5d]), contentType: "application/json" };
    }
    if (roll < 0.95) {
      return { payload: Buffer.from(Array.from({ length: int(200) }, () => int(256))), contentType: "application/json" };
    }
    const items = Array.from({ length: 1 + int(3) }, payload);
    return { payload: deepText(JSON.stringify(items)).replace(/"prompt_tokens":\d+/, `"prompt_tokens":${pick(["1e400", "-0", "1.0", "9".repeat(40)])}`), contentType: "application/json", items };
  };
}

describe("fuzzing the receiver", () => {
  it(`answers ${BODIES} hostile bodies without a 5xx, accounts for every item, and charges only what it accepted`, async () => {
    const nextBody = generator(7);
    const bodies = Array.from({ length: BODIES }, nextBody);
    // Two arrays of as many small items as a request may hold; 100 of them invalid, so that the
    // 207 answer (which lists 100 refusals in full) names every one.
    for (const batch of [0, 1]) {
      const items = Array.from({ length: h.settings.maxItemsPerRequest }, (_, n) =>
        n % 2 === 0 || n >= 200
          ? { id: `fuzz-big-${batch}-${n}`, model: "gpt-4o", prompt_tokens: 1, completion_tokens: 1, metadata: { user_api_key_team_id: `fuzz-acct-${n % 20}` } }
          : { id: `fuzz-big-${batch}-${n}`, prompt_tokens: "many" },
      );
      bodies.push({ payload: JSON.stringify(items), contentType: "application/json", items });
    }

    const accepted = new Map<string, unknown>();
    const statuses = new Map<number, number>();
    let cursor = 0;
    const send = async () => {
      while (cursor < bodies.length) {
        const body = bodies[cursor++]!;
        const response = await h.postCallback(body.payload, { "content-type": body.contentType });
        statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
        expect([202, 207, 400]).toContain(response.statusCode);
        const answer = response.json();
        if (response.statusCode === 400) {
          expect(answer.error).toEqual({ code: expect.any(String), message: expect.any(String) });
          continue;
        }
        for (const rejected of answer.rejected) {
          expect(rejected).toEqual({ index: expect.any(Number), id: expect.toBeOneOf([expect.any(String), null]), reason: expect.any(String), issues: expect.any(Array) });
        }
        if (!body.items) continue;
        expect(answer.rejected_count ?? 0).toBe(answer.rejected.length);
        expect(answer.accepted + answer.rejected.length).toBe(body.items.length);
        const refused = new Set(answer.rejected.map((rejected: { index: number }) => rejected.index));
        body.items.forEach((item, index) => {
          if (!refused.has(index)) accepted.set(idempotencyKeyOf(item)!, item);
        });
      }
    };
    await Promise.all(Array.from({ length: 8 }, send));
    await h.drainQueue();

    const { pool } = h.deps.database;
    const { rows: receipts } = await pool.query<{ idempotency_key: string }>("SELECT idempotency_key FROM charge_receipts");
    expect(receipts.length).toBeGreaterThan(1000);
    // A second call under a request id already charged has its own receipt, `<id>@<time>` (reused-ids.ts).
    const requestIdOf = (key: string) => /^([\s\S]*)@\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.exec(key)?.[1];
    expect(receipts.filter(({ idempotency_key: key }) => !accepted.has(key) && !accepted.has(requestIdOf(key) ?? key))).toEqual([]);
    // Every accepted call ended somewhere: a receipt, a quarantine row, or not charged as a failure.
    const { rows: quarantined } = await pool.query<{ idempotency_key: string }>(
      "SELECT idempotency_key FROM quarantine WHERE stage = 'worker' AND idempotency_key IS NOT NULL",
    );
    const settled = new Set([...receipts, ...quarantined].map((row) => row.idempotency_key));
    const unaccounted = [...accepted].filter(
      ([key, item]) => !settled.has(key) && (item as { status?: unknown }).status !== "failure",
    );
    expect(unaccounted.map(([key]) => key)).toEqual([]);
    expect(await h.deps.usageQueue.getJobCounts("failed")).toEqual({ failed: 0 });
    const { rows } = await pool.query("SELECT count(*)::int AS n FROM quarantine WHERE stage = 'receiver'");
    expect(rows[0].n).toBeGreaterThan(1000);
    expect(statuses.get(207)).toBeGreaterThan(100);
    expect(statuses.get(400)).toBeGreaterThan(100);
    expect((await h.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
  }, 240_000);
});
