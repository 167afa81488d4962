import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXPIRY_LOCK } from "../../src/books/expire-credits.js";
import { FakeLitellmAdmin } from "../support/fake-litellm-admin.js";
import { useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { waitFor } from "../support/wait.js";

const MASTER_KEY = "sk-litellm-master-4b1e8d07c2a95f36";
const fake = new FakeLitellmAdmin(MASTER_KEY);
beforeAll(() => fake.start());
afterAll(() => fake.stop());

// The real worker: its credit-expiry loop sweeps every second, and it blocks the team that pays
// for an account at the gateway (the fake) when the balance reaches zero.
const h = useServiceHarness(() => ({
  CREDIT_EXPIRY_INTERVAL: "1s",
  ENFORCE_ON_DEPLETED: "team",
  LITELLM_ADMIN_URL: fake.url,
  LITELLM_MASTER_KEY: MASTER_KEY,
}));

const secondsAhead = (seconds: number) => new Date(Date.now() + seconds * 1000).toISOString();

async function post(url: string, body: Record<string, unknown>, status = 201) {
  const answer = await h.admin("POST", url, body);
  expect(answer.statusCode, answer.body).toBe(status);
  return answer.json();
}

/** One call of the LiteLLM fixture paid by `account` (its team), charged by the worker; returns what it cost. */
async function charge(id: string, account: string): Promise<number> {
  expect((await h.postCallback([litellmPayload(id, account)])).statusCode).toBe(202);
  await h.drainQueue();
  return (await h.admin("GET", `/v1/receipts/${id}`)).json().charged_credits;
}

async function ledgerOf(account: string) {
  const { rows } = await h.deps.database.pool.query(
    "SELECT kind, amount_credits::int AS amount, balance_after::int AS after FROM ledger_entries WHERE billing_account_id = $1 ORDER BY seq",
    [account],
  );
  return rows;
}

/** Runs `work` while the sweep is held back (its advisory lock): the sweep comes after it, however loaded the machine. */
async function beforeAnySweep(work: () => Promise<void>): Promise<void> {
  const client = await h.deps.database.pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [EXPIRY_LOCK]);
    try {
      await work();
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [EXPIRY_LOCK]);
    }
  } finally {
    client.release();
  }
}

const hasExpiry = async (account: string) => (await ledgerOf(account)).some((entry) => entry.kind === "expiry");
const alertsFor = (event: string, account: string) => h.alerts(event).filter((line) => line.billing_account_id === account);
const gatewayCalls = (team: string) => fake.calls.filter((call) => call.principal === team).map((call) => call.route);

describe("expiry through the worker's sweep", () => {
  it("a debit drew the soonest-expiring bucket; the rest of it leaves as one expiry entry, credits_expired once, on the invoice", async () => {
    const account = "worker-expiry";
    await beforeAnySweep(async () => {
      await post(`/v1/accounts/${account}/grants`, { credits: 1000, reference: "worker-expiry-a", expires_at: secondsAhead(1) });
      await post(`/v1/accounts/${account}/grants`, { credits: 1000, reference: "worker-expiry-b" });
      await post(`/v1/accounts/${account}/debits`, { credits: 300, reference: "worker-expiry-fee", reason: "seat fee" });
    });
    await waitFor(() => hasExpiry(account));
    expect(await ledgerOf(account)).toEqual([
      { kind: "grant", amount: 1000, after: 1000 },
      { kind: "grant", amount: 1000, after: 2000 },
      { kind: "debit", amount: -300, after: 1700 },
      { kind: "expiry", amount: -700, after: 1000 },
    ]);
    await waitFor(() => alertsFor("credits_expired", account).length > 0);
    expect(alertsFor("credits_expired", account)).toEqual([expect.objectContaining({ reference: "worker-expiry-a", expired_credits: 700, balance_after: 1000 })]);
    const summary = (await h.admin("GET", `/v1/accounts/${account}/credits/summary`)).json();
    expect(summary).toMatchObject({ balance_credits: 1000, grants: [{ reference: "worker-expiry-b", remaining_credits: 1000 }], next_expiry: null });
    const { rows } = await h.deps.database.pool.query(
      "SELECT DISTINCT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS period FROM ledger_entries WHERE billing_account_id = $1",
      [account],
    );
    // Unless the test straddles a month's edge, the whole story is one month's invoice.
    if (rows.length === 1) {
      const invoice = (await h.admin("GET", `/v1/accounts/${account}/invoice?period=${rows[0].period}`)).json();
      expect(invoice).toMatchObject({ credits_granted: 2000, credits_debited: 300, credits_expired: 700, closing_balance: 1000 });
    }
  });
});

describe("enforcement on moves that are not usage", () => {
  it("an expiry that takes the balance to zero blocks the team again, after a grant had unblocked it", async () => {
    const team = "worker-expiry-team";
    // The call records who pays, and its debt blocks the team.
    const cost = await charge("worker-expiry-team-call", team);
    await waitFor(() => fake.callsTo("team/block", team) === 1);
    // The grant pays the debt; 1,000 stay live, until they expire.
    await post(`/v1/accounts/${team}/grants`, { credits: cost + 1000, reference: "worker-expiry-team-trial", expires_at: secondsAhead(1) });
    await waitFor(() => fake.callsTo("team/unblock", team) === 1);
    await waitFor(() => fake.callsTo("team/block", team) === 2);
    expect(gatewayCalls(team)).toEqual(["team/block", "team/unblock", "team/block"]);
    expect((await ledgerOf(team)).map((entry) => [entry.kind, entry.after])).toEqual([
      ["charge", -cost],
      ["grant", 1000],
      ["expiry", 0],
    ]);
    await waitFor(() => alertsFor("balance_depleted", team).some((line) => line.entry_kind === "expiry"));
  });

  it("a transfer out that spends every credit blocks the source's team; a transfer back unblocks it", async () => {
    const team = "worker-transfer-team";
    await post(`/v1/accounts/${team}/grants`, { credits: 10_000, reference: "worker-transfer-grant" });
    const cost = await charge("worker-transfer-call", team);
    const all = 10_000 - cost;
    const out = await post(`/v1/accounts/${team}/transfers`, { to: "worker-transfer-sink", credits: all, reference: "worker-transfer-out", expiration: "none" });
    expect(out.from_balance_credits).toBe(0);
    await waitFor(() => fake.callsTo("team/block", team) === 1);
    await post("/v1/accounts/worker-transfer-sink/transfers", { to: team, credits: 500, reference: "worker-transfer-back", expiration: "none" });
    await waitFor(() => fake.callsTo("team/unblock", team) === 1);
    expect(gatewayCalls(team)).toEqual(["team/block", "team/unblock"]);
    expect(alertsFor("balance_depleted", team)).toEqual([expect.objectContaining({ entry_kind: "transfer_out", balance_after: 0 })]);
  });

  it("a debit into debt blocks the team; reversing the call lifts the balance and unblocks it", async () => {
    const team = "worker-debit-team";
    await post(`/v1/accounts/${team}/grants`, { credits: 10_000, reference: "worker-debit-grant" });
    const cost = await charge("worker-debit-call", team);
    const debit = await post(`/v1/accounts/${team}/debits`, { credits: 10_000 - cost + 100, reference: "worker-debit-fee", reason: "seat fee" });
    expect(debit.balance_credits).toBe(-100);
    await waitFor(() => fake.callsTo("team/block", team) === 1);
    const reversal = await post("/v1/receipts/worker-debit-call/reversals", { reference: "worker-debit-refund", reason: "provider outage" });
    expect(reversal.balance_credits).toBe(cost - 100);
    await waitFor(() => fake.callsTo("team/unblock", team) === 1);
    expect(gatewayCalls(team)).toEqual(["team/block", "team/unblock"]);
  });
});
