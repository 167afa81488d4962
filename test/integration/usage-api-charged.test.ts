import { describe, expect, it } from "vitest";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";
import { type PricedUsage, recordUsageBatch } from "../../src/books/record-usage.js";
import { useServiceHarness } from "../support/harness.js";
import { pricedUsage } from "../support/usage-events.js";
import { rollUpAll } from "../support/roll-up-all.js";
import { expectRollupsEqualReceipts } from "../support/usage-rollups.js";

// The usage API over what the charge path itself wrote: receipts, and usage_hourly beside them.
const h = useServiceHarness({}, { worker: false });

function call(key: string, account: string, credits: number, detail: { eventTime: string; model: string; keyHash?: string; teamId?: string }): PricedUsage {
  const priced = pricedUsage(key, account, credits);
  return { ...priced, event: { ...priced.event, ...detail, promptTokens: 100, completionTokens: 20 } };
}

describe("the usage API over charged calls", () => {
  it("answers what recordUsageBatch charged, by UTC month, model, key and team, and ranks the accounts", async () => {
    const [alice, bob] = ["a".repeat(64), "b".repeat(64)];
    for (const account of ["charged-1", "charged-2"]) {
      expect((await h.admin("POST", `/v1/accounts/${account}/grants`, { credits: 100_000, reference: `fund-${account}` })).statusCode).toBe(201);
    }
    await recordUsageBatch(h.deps.database.pool, {
      charges: [
        // 23:30 UTC on 31 January: January's, in every time zone's session.
        call("charged-call-1", "charged-1", 300, { eventTime: "2028-01-31T23:30:00.000Z", model: "gpt-4o", keyHash: alice, teamId: "research" }),
        call("charged-call-2", "charged-1", 200, { eventTime: "2028-01-31T23:59:59.999Z", model: "claude", keyHash: bob }),
        call("charged-call-3", "charged-1", 50, { eventTime: "2028-02-01T00:00:00.000Z", model: "gpt-4o", keyHash: alice, teamId: "research" }),
        call("charged-call-4", "charged-2", 900, { eventTime: "2028-02-29T23:00:00.000Z", model: "gpt-4o" }),
      ],
      quarantines: [],
      priceBookHash: "test",
      lowBalanceThresholds: [],
      enforcement: ENFORCEMENT_OFF,
    });
    // Usage follows the charges by a rollup run.
    await rollUpAll(h.deps.database.pool);
    await expectRollupsEqualReceipts(h.deps.database.pool);

    const range = "from=2028-01-01T00:00:00Z&to=2028-03-01T00:00:00Z&granularity=month";
    const read = async (path: string) => {
      const answer = await h.admin("GET", path);
      expect(answer.statusCode, answer.body).toBe(200);
      return (answer.json().rows as Array<Record<string, unknown>>).map(({ period_start, group, calls, charged_credits, input_tokens }) => ({
        period_start, group, calls, charged_credits, input_tokens,
      }));
    };
    expect(await read(`/v1/accounts/charged-1/usage?${range}&group_by=model`)).toEqual([
      { period_start: "2028-01-01T00:00:00.000Z", group: "gpt-4o", calls: 1, charged_credits: 300, input_tokens: 100 },
      { period_start: "2028-01-01T00:00:00.000Z", group: "claude", calls: 1, charged_credits: 200, input_tokens: 100 },
      { period_start: "2028-02-01T00:00:00.000Z", group: "gpt-4o", calls: 1, charged_credits: 50, input_tokens: 100 },
    ]);
    expect(await read(`/v1/accounts/charged-1/usage?${range}&group_by=team`)).toEqual([
      { period_start: "2028-01-01T00:00:00.000Z", group: "research", calls: 1, charged_credits: 300, input_tokens: 100 },
      { period_start: "2028-01-01T00:00:00.000Z", group: null, calls: 1, charged_credits: 200, input_tokens: 100 },
      { period_start: "2028-02-01T00:00:00.000Z", group: "research", calls: 1, charged_credits: 50, input_tokens: 100 },
    ]);
    expect(await read(`/v1/accounts/charged-1/usage?from=2028-01-31T00:00:00Z&to=2028-02-02T00:00:00Z&granularity=hour&group_by=key`)).toEqual([
      { period_start: "2028-01-31T23:00:00.000Z", group: alice, calls: 1, charged_credits: 300, input_tokens: 100 },
      { period_start: "2028-01-31T23:00:00.000Z", group: bob, calls: 1, charged_credits: 200, input_tokens: 100 },
      { period_start: "2028-02-01T00:00:00.000Z", group: alice, calls: 1, charged_credits: 50, input_tokens: 100 },
    ]);
    expect(await read(`/v1/usage?from=2028-02-01T00:00:00Z&to=2028-03-01T00:00:00Z&granularity=month&group_by=account&limit=1`)).toEqual([
      { period_start: "2028-02-01T00:00:00.000Z", group: "charged-2", calls: 1, charged_credits: 900, input_tokens: 100 },
    ]);
  });
});
