import { describe, expect, it } from "vitest";
import { insertQuarantined, quarantineEntry } from "../../src/books/quarantine.js";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { type MissingCalls, reconcileGateway } from "../../src/gateway/reconcile-spend-log.js";
import { createSpendLogPool } from "../../src/litellm/spend-log.js";
import { normaliseCallbackItem } from "../../src/litellm/normalise.js";
import { replayQuarantined } from "../../src/ops/replay-quarantine.js";
import { withTransaction } from "../../src/platform/db/client.js";
import { enqueueCallbackItems } from "../../src/platform/queue-producer.js";
import { loadPriceBook } from "../../src/pricing/price-book.js";
import { useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { spendLogRowOf, useLitellmDatabase } from "../support/litellm-spend-log.js";

// Providers that repeat a response id, and callers that reuse one x-litellm-call-id, make LiteLLM
// send two different calls under one id. Each is charged once; no copy of either is charged twice.
const litellm = useLitellmDatabase();
const h = useServiceHarness();

// 2026-01-01T00:00:00.000Z, in epoch milliseconds.
const T0 = Date.UTC(2026, 0, 1);

/**
 * A gpt-4o call ending `endMs` after T0 (LiteLLM's epoch seconds, to the microsecond), at the
 * price book's 25 credits a prompt token and 100 a completion token.
 */
function call(id: string, account: string, endMs: number, prompt: number, completion: number) {
  const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  return litellmPayload(id, account, {
    ...usage,
    startTime: (T0 + endMs - 800) / 1000,
    endTime: (T0 + endMs) / 1000,
    response: { usage },
    response_cost: (prompt * 25 + completion * 100) / 1e7,
  });
}

async function receiptsOf(account: string): Promise<Record<string, number>> {
  const { rows } = await h.deps.database.pool.query<{ idempotency_key: string; charged_credits: string }>(
    "SELECT idempotency_key, charged_credits FROM charge_receipts WHERE billing_account_id = $1 ORDER BY idempotency_key",
    [account],
  );
  return Object.fromEntries(rows.map((row) => [row.idempotency_key, Number(row.charged_credits)]));
}

async function balanceOf(account: string): Promise<number> {
  return (await h.admin("GET", `/v1/accounts/${account}/credits/summary`)).json().balance_credits;
}

/** Sends again what was already delivered: Redis has forgotten the jobs, so PostgreSQL alone decides. */
async function deliverAgain(payloads: unknown[]) {
  await h.deps.usageQueue.clean(0, 10_000, "completed");
  expect((await h.postCallback(payloads)).statusCode).toBe(202);
  await h.drainQueue();
}

describe("a request id that comes back with another call", () => {
  it("charges the second call under its own key, exactly, alerts once, and charges no redelivery of either", async () => {
    const first = call("chatcmpl-reused-1", "team-reused", 123.6, 10, 20);
    const second = call("chatcmpl-reused-1", "team-reused", 42_123.6, 72, 60);
    expect((await h.postCallback([first])).statusCode).toBe(202);
    await h.drainQueue();
    expect((await h.postCallback([second])).statusCode).toBe(202);
    await h.drainQueue();

    const secondKey = "chatcmpl-reused-1@2026-01-01T00:00:42.123Z";
    // 10 × 25 + 20 × 100 = 2,250 credits; 72 × 25 + 60 × 100 = 7,800 credits.
    expect(await receiptsOf("team-reused")).toEqual({ "chatcmpl-reused-1": 2250, [secondKey]: 7800 });
    expect(await balanceOf("team-reused")).toBe(-10_050);
    const receipt = await h.admin("GET", `/v1/receipts/${encodeURIComponent(secondKey)}`);
    expect(receipt.json()).toMatchObject({ idempotency_key: secondKey, prompt_tokens: 72, charged_credits: 7800, event_time: "2026-01-01T00:00:42.123Z" });
    const ledger = (await h.admin("GET", "/v1/accounts/team-reused/ledger")).json().entries;
    expect(ledger.map((entry: { reference: string }) => entry.reference).sort()).toEqual(["chatcmpl-reused-1", secondKey]);
    expect(h.alerts("response_id_reused")).toEqual([
      expect.objectContaining({
        idempotency_key: secondKey,
        request_id: "chatcmpl-reused-1",
        billing_account_id: "team-reused",
        event_time: "2026-01-01T00:00:42.123Z",
        first_event_time: "2026-01-01T00:00:00.123Z",
        charged_credits: 7800,
      }),
    ]);
    expect(h.alerts("receipt_conflict")).toEqual([]);

    // Either call again, alone, together, twice in one batch: nothing new, no new alert.
    await deliverAgain([second]);
    await deliverAgain([first]);
    await deliverAgain([second, first, second]);
    expect(await receiptsOf("team-reused")).toEqual({ "chatcmpl-reused-1": 2250, [secondKey]: 7800 });
    expect(await balanceOf("team-reused")).toBe(-10_050);
    expect(h.alerts("response_id_reused")).toHaveLength(1);
    expect(h.alerts("receipt_conflict")).toEqual([]);
  });

  it("charges three calls under one id arriving in one batch once each, and keeps the same call with other usage in quarantine", async () => {
    const calls = [call("reused-batch", "team-batch", 1_000.4, 1, 1), call("reused-batch", "team-batch", 2_000.4, 2, 2), call("reused-batch", "team-batch", 3_000.4, 3, 3)];
    // The second call again, its time read a millisecond later (as LiteLLM's spend log may round it): the same call.
    const secondAgain = call("reused-batch", "team-batch", 2_001, 2, 2);
    // The third call with other usage at its very time: the same call, which cannot be charged twice.
    const thirdChanged = call("reused-batch", "team-batch", 3_000.4, 3, 4);
    expect((await h.postCallback([...calls, secondAgain, thirdChanged])).statusCode).toBe(202);
    await h.drainQueue();
    const charged = await receiptsOf("team-batch");
    expect(Object.values(charged).sort()).toEqual([125, 250, 375]);
    expect(Object.keys(charged)).toHaveLength(3);
    expect(await balanceOf("team-batch")).toBe(-750);
    expect(h.alerts("response_id_reused").filter((alert) => alert.request_id === "reused-batch")).toHaveLength(2);
    expect(h.alerts("receipt_conflict").filter((alert) => alert.idempotency_key === "reused-batch")).toHaveLength(1);
  });
});

describe("receipt_conflict rows kept before a repeated id was charged", () => {
  /** Quarantines the event as the rule before kept a second call under a charged id. */
  async function keptAsConflict(payload: Record<string, unknown>) {
    const normalised = normaliseCallbackItem(payload, { billingAccountFrom: h.settings.billingAccountFrom });
    if (!normalised.ok) throw new Error("the payload is refused");
    const { event } = normalised;
    await withTransaction(h.deps.database.pool, (client) =>
      insertQuarantined(client, [quarantineEntry("worker", "receipt_conflict", { event }, { message: "kept by the rule before" })]),
    );
  }

  const replay = () =>
    replayQuarantined(h.deps.database.pool, h.deps.usageQueue, { billingAccountFrom: h.settings.billingAccountFrom, reason: "receipt_conflict", waitMs: 10_000 });

  it("are charged by a replay, once, however often they are sent", async () => {
    await h.postCallback([call("old-conflict-1", "team-old", 500, 10, 20)]);
    await h.drainQueue();
    await keptAsConflict(call("old-conflict-1", "team-old", 65_000, 72, 60));

    const first = await replay();
    expect(first).toMatchObject({ ran: true, report: { replayed: 1, charged: 1, alreadyCharged: 0, refusedAgain: 0 } });
    // Only the earlier test's conflict stands (the same call with other usage): it is not sent.
    expect(first.ran && first.report.refusals.map((refusal) => [refusal.idempotencyKey, refusal.reason])).toEqual([["reused-batch", "receipt_conflict"]]);
    await h.drainQueue();
    expect(await receiptsOf("team-old")).toEqual({ "old-conflict-1": 2250, "old-conflict-1@2026-01-01T00:01:05.000Z": 7800 });
    // Replayed rows are not sent again; one sent twice (a crash before its mark was committed) charges nothing more.
    expect(await replay()).toMatchObject({ ran: true, report: { replayed: 0 } });
    await h.deps.database.pool.query("UPDATE quarantine SET replayed_at = NULL WHERE idempotency_key = 'old-conflict-1'");
    expect(await replay()).toMatchObject({ ran: true, report: { replayed: 1, charged: 0, alreadyCharged: 1 } });
    await h.drainQueue();
    expect(await receiptsOf("team-old")).toEqual({ "old-conflict-1": 2250, "old-conflict-1@2026-01-01T00:01:05.000Z": 7800 });
    expect(await balanceOf("team-old")).toBe(-10_050);
    expect(h.alerts("response_id_reused").filter((alert) => alert.request_id === "old-conflict-1")).toHaveLength(1);
    expect((await reconcileLedger(h.deps.database.pool)).drifts).toEqual([]);
  });
});

describe("the gateway backfill and a repeated id", () => {
  // A day after the other tests' calls, so that this window holds only this test's receipts.
  const DAY = 86_400_000;
  const HOUR = 3_600_000;
  const window = { since: new Date(T0 + DAY - HOUR), until: new Date(T0 + DAY + HOUR) };

  /** What the backfill would send, read from LiteLLM's spend log before the callbacks were charged. */
  async function backfillReads(): Promise<MissingCalls> {
    const spendLog = createSpendLogPool(litellm.url);
    const read: MissingCalls = { events: [], rejected: [] };
    try {
      await reconcileGateway({
        spendLog,
        pool: h.deps.database.pool,
        priceBook: loadPriceBook(h.settings.pricingFile),
        billingAccountFrom: h.settings.billingAccountFrom,
        ...window,
        apply: async (missing) => {
          read.events.push(...missing.events);
          read.rejected.push(...missing.rejected);
        },
      });
    } finally {
      await spendLog.end();
    }
    return read;
  }

  it("never charges a copy read from LiteLLM's spend log twice, whichever arrives first", async () => {
    // LiteLLM's spend log keeps one row per request id (create_many with skip_duplicates): the
    // first call's, its end time rounded to the millisecond where the callback's is truncated.
    const calls = {
      late: [call("bf-reused-late", "team-bf", DAY + 10_123.6, 10, 20), call("bf-reused-late", "team-bf", DAY + 20_000, 72, 60)],
      early: [call("bf-reused-early", "team-bf", DAY + 30_123.6, 10, 20), call("bf-reused-early", "team-bf", DAY + 40_000, 72, 60)],
    };
    const rowOf = (payload: Record<string, unknown>) => {
      const endMs = Math.round(Number(payload.endTime) * 1000);
      return { ...spendLogRowOf(payload, new Date(endMs - 800)), endTime: new Date(endMs) };
    };
    await litellm.insert([rowOf(calls.late[0]!), rowOf(calls.early[0]!)]);
    const read = await backfillReads();
    expect(read.events.map((event) => [event.idempotencyKey, event.eventTime])).toEqual([
      ["bf-reused-late", "2026-01-02T00:00:10.124Z"],
      ["bf-reused-early", "2026-01-02T00:00:30.124Z"],
    ]);
    const early = read.events.filter((event) => event.idempotencyKey === "bf-reused-early");
    const late = read.events.filter((event) => event.idempotencyKey === "bf-reused-late");

    // The backfill's copy charged first, then both callbacks; and both callbacks first, then the copy.
    await enqueueCallbackItems(h.deps.usageQueue, { events: early, rejected: [] });
    await h.drainQueue();
    expect((await h.postCallback([...calls.early, ...calls.late])).statusCode).toBe(202);
    await h.drainQueue();
    await enqueueCallbackItems(h.deps.usageQueue, { events: late, rejected: [] });
    await h.drainQueue();

    expect(await receiptsOf("team-bf")).toEqual({
      "bf-reused-early": 2250,
      "bf-reused-early@2026-01-02T00:00:40.000Z": 7800,
      "bf-reused-late": 2250,
      "bf-reused-late@2026-01-02T00:00:20.000Z": 7800,
    });
    expect(await balanceOf("team-bf")).toBe(-20_100);
    expect(h.alerts("receipt_conflict").filter((alert) => String(alert.idempotency_key).startsWith("bf-"))).toEqual([]);
    expect(await backfillReads()).toEqual({ events: [], rejected: [] });

    // What `ops gateway reconcile` then shows: LiteLLM's one row per id is billed, and each second
    // call is a receipt LiteLLM has no row for (its spend log skipped it as a duplicate).
    const spendLog = createSpendLogPool(litellm.url);
    try {
      const report = await reconcileGateway({
        spendLog,
        pool: h.deps.database.pool,
        priceBook: loadPriceBook(h.settings.pricingFile),
        billingAccountFrom: h.settings.billingAccountFrom,
        ...window,
      });
      expect(report.total).toMatchObject({ litellmCalls: 2, billed: 2, missing: 0 });
      expect(report.receiptsWithoutRow).toBe(2);
    } finally {
      await spendLog.end();
    }
  });
});
