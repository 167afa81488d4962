import { describe, expect, it } from "vitest";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { seededRandom } from "../support/random.js";

const THRESHOLDS = [5000, 1000];
const h = useServiceHarness({ LOW_BALANCE_THRESHOLDS: THRESHOLDS.join(",") });


describe("books after a mix of concurrent grants, charges, duplicates and retries", () => {
  it("reconcile is ok, every invoice ties out, and alert lines match the ledger one for one", async () => {
    const next = seededRandom(20261121);
    const accounts = Array.from({ length: 12 }, (_, n) => `books-${n}`);
    const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)]!;
    let call = 0;
    const sent: unknown[][] = [];
    const work: Array<() => Promise<unknown>> = [];
    const grants: Array<{ account: string; credits: number; reference: string }> = [];
    for (let step = 0; step < 60; step++) {
      const roll = next();
      if (roll < 0.3) {
        // Grants; a third of them a retried top-up (the same request again, answered 200).
        const grant =
          roll < 0.1 && grants.length > 0 ? pick(grants) : { account: pick(accounts), credits: 2000 + step, reference: `books-grant-${step}` };
        grants.push(grant);
        work.push(async () => {
          const answer = await h.admin("POST", `/v1/accounts/${grant.account}/grants`, { credits: grant.credits, reference: grant.reference });
          expect([200, 201]).toContain(answer.statusCode);
        });
      } else if (roll < 0.45 && sent.length > 0) {
        // A batch delivered again, as LiteLLM or a retrying proxy would.
        const batch = pick(sent);
        work.push(() => h.postCallback(batch));
      } else {
        const batch = Array.from({ length: 1 + Math.floor(next() * 20) }, () => {
          call += 1;
          const tokens = 1 + Math.floor(next() * 400);
          return litellmPayload(`books-call-${call}`, pick(accounts), {
            prompt_tokens: tokens,
            completion_tokens: tokens,
            response: { usage: { prompt_tokens: tokens, completion_tokens: tokens } },
          });
        });
        sent.push(batch);
        work.push(() => h.postCallback(batch));
      }
    }
    // Four concurrent streams of requests.
    await Promise.all([0, 1, 2, 3].map(async (stream) => {
      for (let index = stream; index < work.length; index += 4) await work[index]!();
    }));
    // Whether the random mix crosses a threshold depends on how the streams interleave, so one
    // account crosses each of them whatever the order: granted exactly 5,000, then charged 5,375
    // (125 credits a token pair at the fixture's gpt-4o rates) in calls of 125, 250, 1,250 and 3,750.
    const steady = "books-steady";
    accounts.push(steady);
    expect((await h.admin("POST", `/v1/accounts/${steady}/grants`, { credits: 5000, reference: "books-grant-steady" })).statusCode).toBe(201);
    grants.push({ account: steady, credits: 5000, reference: "books-grant-steady" });
    await h.postCallback([1, 2, 10, 30].map((tokens) =>
      litellmPayload(`books-steady-${tokens}`, steady, {
        prompt_tokens: tokens,
        completion_tokens: tokens,
        response: { usage: { prompt_tokens: tokens, completion_tokens: tokens } },
      })));
    await h.drainQueue();

    const { pool } = h.deps.database;
    expect(await reconcileLedger(pool)).toMatchObject({ ok: true, drifts: [] });

    // The months the ledger posted in, by the database's clock (one, unless the run straddles a
    // month's edge): month by month the invoices chain, and together they cover the whole ledger.
    const { rows: months } = await pool.query(
      "SELECT DISTINCT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS period FROM ledger_entries ORDER BY 1",
    );
    for (const account of accounts) {
      const summary = await h.admin("GET", `/v1/accounts/${account}/credits/summary`);
      if (summary.statusCode === 404) continue;
      const { rows } = await pool.query(
        `SELECT coalesce(sum(amount_credits) FILTER (WHERE kind = 'grant'), 0)::int AS granted,
                coalesce(-sum(amount_credits) FILTER (WHERE kind = 'charge'), 0)::int AS used,
                count(*) FILTER (WHERE kind = 'charge')::int AS receipts
         FROM ledger_entries WHERE billing_account_id = $1`,
        [account],
      );
      const totals = { granted: 0, used: 0, receipts: 0 };
      let opening = 0;
      for (const { period } of months) {
        const invoice = (await h.admin("GET", `/v1/accounts/${account}/invoice?period=${period}`)).json();
        expect(invoice.opening_balance).toBe(opening);
        opening = invoice.closing_balance;
        totals.granted += invoice.credits_granted;
        totals.used += invoice.credits_used;
        totals.receipts += invoice.receipt_count;
      }
      expect(totals).toEqual({ granted: rows[0].granted, used: rows[0].used, receipts: rows[0].receipts });
      expect(opening).toBe(summary.json().balance_credits);
    }

    // Every alert the ledger's charges call for, and no other, appears exactly once in the log.
    const { rows: charges } = await pool.query(
      `SELECT l.balance_before::int AS before, l.balance_after::int AS after, r.id::text AS receipt_id
       FROM ledger_entries l JOIN charge_receipts r ON r.id = l.receipt_id WHERE l.billing_account_id LIKE 'books-%'`,
    );
    const expected: string[] = [];
    for (const { before, after, receipt_id } of charges) {
      if (after < 0) expected.push(`inv_post_call_negative_balance ${receipt_id}`);
      if (before > 0 && after <= 0) expected.push(`balance_depleted ${receipt_id}`);
      for (const threshold of THRESHOLDS) if (before >= threshold && after < threshold) expected.push(`low_balance ${receipt_id} ${threshold}`);
    }
    const logged = h.logs
      .filter((line) => ["inv_post_call_negative_balance", "balance_depleted", "low_balance"].includes(String(line.event)))
      .filter((line) => String(line.billing_account_id).startsWith("books-"))
      .map((line) => [line.event, line.receipt_id, line.threshold].filter((part) => part !== undefined).join(" "));
    expect(expected.length).toBeGreaterThan(10);
    expect(logged.sort()).toEqual(expected.sort());
    const { rows: granted } = await pool.query("SELECT count(*)::int AS n FROM grants WHERE reference LIKE 'books-grant-%'");
    expect(granted[0].n).toBe(new Set(grants.map((grant) => grant.reference)).size);
    expect(expected.some((line) => line.startsWith("low_balance"))).toBe(true);
    expect(expected.some((line) => line.startsWith("balance_depleted"))).toBe(true);
  });
});
