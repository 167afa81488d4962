import { createHash } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chargeUsageEvents } from "../../src/worker/charge-usage-events.js";
import { enforceCurrentPolicy, ENFORCEMENT_OFF } from "../../src/books/enforcement.js";
import { recordGrant } from "../../src/books/grants.js";
import { normaliseCallbackItem } from "../../src/litellm/normalise.js";
import { loadPriceBook } from "../../src/pricing/price-book.js";
import { DEFAULT_BILLING_ACCOUNT_FROM } from "../../src/platform/config.js";
import type { UsageEvent } from "../../src/usage/usage-event.js";
import { FakeLitellmAdmin } from "../support/fake-litellm-admin.js";
import { type Harness, useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { runOps } from "../support/ops-cli.js";
import { waitFor } from "../support/wait.js";

const MASTER_KEY = "sk-litellm-master-7f3a9c2e51d84b60";
// Longer than a few delivery passes (one a second): what has not been sent by then is not going to be.
const QUIET_MS = 3_000;

/** The hash of a key named after `name`, as LiteLLM writes it into `user_api_key_hash` (SHA-256 hex). */
const keyHashOf = (name: string) => createHash("sha256").update(`sk-${name}`).digest("hex");

/** A callback for `account` (the team pays), made with the key whose hash is `keyHash`. */
const call = (id: string, account: string, keyHash = keyHashOf(account)) =>
  litellmPayload(id, account, { metadata: { user_api_key_hash: keyHash } });

async function balanceOf(h: Harness, account: string): Promise<bigint> {
  const { rows } = await h.deps.database.pool.query<{ balance_credits: string }>("SELECT balance_credits FROM accounts WHERE id = $1", [account]);
  return BigInt(rows[0]?.balance_credits ?? "0");
}

async function grant(h: Harness, account: string, credits: bigint, reference: string): Promise<void> {
  const answer = await h.admin("POST", `/v1/accounts/${account}/grants`, { credits: Number(credits), reference });
  expect(answer.statusCode).toBe(201);
}

async function charge(h: Harness, ...items: unknown[]): Promise<void> {
  expect((await h.postCallback(items)).statusCode).toBe(202);
  await h.drainQueue();
}

/** What one call of the fixture costs, charged to an account of its own. */
async function costOfOneCall(h: Harness): Promise<bigint> {
  await charge(h, call("cost-probe", "probe-account"));
  return -(await balanceOf(h, "probe-account"));
}

const quiet = () => new Promise((resolve) => setTimeout(resolve, QUIET_MS));

/** The alerts that LiteLLM said `principal` does not exist. */
const unknownAlerts = (h: Harness, principal: string) => h.alerts("enforcement_principal_unknown").filter((line) => line.principal === principal);
const failedAlerts = (h: Harness, principal: string) => h.alerts("enforcement_failed").filter((line) => line.principal === principal);

/** A service enforcing `policy` against its own fake admin API, and what one call costs there. */
function useEnforcedService(policy: string) {
  const fake = new FakeLitellmAdmin(MASTER_KEY);
  beforeAll(() => fake.start());
  afterAll(() => fake.stop());
  const h = useServiceHarness(() => ({ ENFORCE_ON_DEPLETED: policy, LITELLM_ADMIN_URL: fake.url, LITELLM_MASTER_KEY: MASTER_KEY }));
  const service = { fake, h, cost: 0n };
  beforeAll(async () => {
    service.cost = await costOfOneCall(h);
    expect(service.cost).toBeGreaterThan(50n);
  });
  return service;
}

describe("enforcement of the team that pays (ENFORCE_ON_DEPLETED=team)", () => {
  const service = useEnforcedService("team");
  const { fake, h } = service;

  it("blocks the team once when a charge takes the balance below zero, sends nothing for a further charge, and unblocks once on a grant", async () => {
    const { cost } = service;
    await grant(h, "team-a", cost - 50n, "team-a-1");
    await charge(h, call("a-1", "team-a"));
    expect(await balanceOf(h, "team-a")).toBe(-50n);
    await waitFor(() => fake.callsTo("team/block", "team-a") === 1);

    await charge(h, call("a-2", "team-a"));
    expect(await balanceOf(h, "team-a")).toBe(-50n - cost);
    await quiet();
    expect(fake.callsTo("team/block", "team-a")).toBe(1);

    await grant(h, "team-a", 950n + cost, "team-a-2");
    expect(await balanceOf(h, "team-a")).toBe(900n);
    await waitFor(() => fake.callsTo("team/unblock", "team-a") === 1);
    await quiet();
    expect(fake.calls.filter((sent) => sent.principal === "team-a").map((sent) => sent.route)).toEqual(["team/block", "team/unblock"]);
    // The team policy never touches keys.
    expect(fake.calls.some((sent) => sent.route.startsWith("key/"))).toBe(false);
    expect(h.alerts("enforcement_blocked")).toContainEqual(
      expect.objectContaining({ billing_account_id: "team-a", principal_kind: "team", principal: "team-a", action: "block", attempt: 1 }),
    );
    expect(h.alerts("enforcement_unblocked")).toContainEqual(expect.objectContaining({ billing_account_id: "team-a", principal: "team-a" }));
  });

  it("blocks at zero exactly, and not an account that stays above it", async () => {
    const { cost } = service;
    await grant(h, "team-zero", cost, "team-zero-1");
    await grant(h, "team-rich", cost * 10n, "team-rich-1");
    await charge(h, call("zero-1", "team-zero"), call("rich-1", "team-rich"));
    expect(await balanceOf(h, "team-zero")).toBe(0n);
    await waitFor(() => fake.callsTo("team/block", "team-zero") === 1);
    await quiet();
    expect(fake.callsTo("team/block", "team-rich")).toBe(0);
  });

  it("lands a block decided while LiteLLM answers 500 and then refuses connections for 20 s, once, and the unblock after it", async () => {
    const { cost } = service;
    fake.failWith(500);
    await grant(h, "team-outage", cost - 1n, "team-outage-1");
    await charge(h, call("outage-1", "team-outage"));
    await waitFor(() => h.alerts("enforcement_failed").some((line) => line.principal === "team-outage"));
    expect(h.alerts("enforcement_failed").find((line) => line.principal === "team-outage")).toMatchObject({
      billing_account_id: "team-outage",
      action: "block",
      attempt: 1,
      final: false,
      error: expect.stringContaining("500"),
    });
    await fake.stop();
    // Decided while LiteLLM is away: it must reach LiteLLM after the block, never before it.
    await grant(h, "team-outage", 1000n, "team-outage-2");
    await new Promise((resolve) => setTimeout(resolve, 20_000));
    const refused = h.alerts("enforcement_failed").filter((line) => line.principal === "team-outage" && String(line.error).includes("ECONNREFUSED"));
    expect(refused.length).toBeGreaterThan(0);
    expect(fake.callsTo("team/block", "team-outage")).toBe(0);

    fake.failWith(null);
    await fake.start();
    await waitFor(() => fake.callsTo("team/unblock", "team-outage") === 1, 20_000);
    await quiet();
    expect(fake.calls.filter((sent) => sent.principal === "team-outage").map((sent) => sent.route)).toEqual(["team/block", "team/unblock"]);
  }, 60_000);

  it("unblocks on a grant recorded where enforcement is off (a receiver or CLI without the setting)", async () => {
    const { cost } = service;
    await grant(h, "team-elsewhere", cost - 1n, "elsewhere-1");
    await charge(h, call("elsewhere-1", "team-elsewhere"));
    await waitFor(() => fake.callsTo("team/block", "team-elsewhere") === 1);
    await recordGrant(h.deps.database.pool, { billingAccountId: "team-elsewhere", credits: 1000n, reference: "elsewhere-2", reason: null }, ENFORCEMENT_OFF);
    await waitFor(() => fake.callsTo("team/unblock", "team-elsewhere") === 1);
  });

  it("drops a block LiteLLM answers 'Team not found' for after one try and one alert, and delivers the team's next action", async () => {
    const { cost } = service;
    fake.forget("team-deleted");
    await grant(h, "team-deleted", cost - 1n, "deleted-1");
    await charge(h, call("deleted-1", "team-deleted"));
    await waitFor(() => unknownAlerts(h, "team-deleted").length === 1);
    expect(unknownAlerts(h, "team-deleted")[0]).toMatchObject({
      billing_account_id: "team-deleted",
      principal_kind: "team",
      action: "block",
      attempt: 1,
      answer: "team_not_found",
    });
    const pending = await h.deps.database.pool.query("SELECT 1 FROM enforcement_actions WHERE principal = 'team-deleted' AND done_at IS NULL");
    expect(pending.rowCount).toBe(0);
    // A team of that id made again: the unblock decided next is not held behind the dropped block.
    fake.remember("team-deleted");
    await grant(h, "team-deleted", 1000n, "deleted-2");
    await waitFor(() => fake.callsTo("team/unblock", "team-deleted") === 1);
    expect(fake.requestsTo("team/block", "team-deleted")).toBe(1);
    expect(unknownAlerts(h, "team-deleted")).toHaveLength(1);
    expect(failedAlerts(h, "team-deleted")).toEqual([]);
  });

  it("retries a 404 from a proxy in front of LiteLLM or a wrong path, whatever its words, until LiteLLM answers", async () => {
    const { cost } = service;
    const team = "team-behind-a-proxy";
    fake.behindProxy({ status: 404, body: { detail: "Not Found" } });
    try {
      await grant(h, team, cost - 1n, "proxy-1");
      await charge(h, call("proxy-1", team));
      await waitFor(() => fake.requestsTo("team/block", team) >= 2);
      const seen = fake.requestsTo("team/block", team);
      fake.behindProxy({ status: 404, body: { error: { message: "Route /team/block not found", type: "not_found_error", param: null, code: "404" } } });
      await waitFor(() => fake.requestsTo("team/block", team) >= seen + 2);
    } finally {
      fake.behindProxy(null);
    }
    await waitFor(() => fake.callsTo("team/block", team) === 1);
    const refused = fake.requests.filter((request) => request.principal === team && request.status === 404).length;
    expect(refused).toBeGreaterThanOrEqual(4);
    expect(failedAlerts(h, team).map((line) => [line.attempt, line.final])).toEqual(Array.from({ length: refused }, (_, n) => [n + 1, false]));
    expect(unknownAlerts(h, team)).toEqual([]);
  });

  it("never writes the master key into a log line, though every call carried it", () => {
    expect(fake.requests.length).toBeGreaterThan(0);
    expect(fake.requests.every((request) => request.authorization === `Bearer ${MASTER_KEY}`)).toBe(true);
    expect(JSON.stringify(h.logs)).not.toContain(MASTER_KEY);
  });
});

describe("enforcement of the key that pays (ENFORCE_ON_DEPLETED=key)", () => {
  const service = useEnforcedService("key");
  const { fake, h } = service;

  it("blocks a key that paid for two accounts when one is depleted, and unblocks it only when neither is", async () => {
    const { cost } = service;
    const shared = keyHashOf("a-shared-key");
    await grant(h, "acct-one", cost - 1n, "one-1");
    await grant(h, "acct-two", cost * 2n - 1n, "two-1");
    await charge(h, call("shared-1", "acct-one", shared), call("shared-2", "acct-two", shared));
    await waitFor(() => fake.callsTo("key/block", shared) === 1);

    await charge(h, call("shared-3", "acct-two", shared));
    expect(await balanceOf(h, "acct-two")).toBeLessThan(0n);
    // acct-one back in credit: the key still pays for acct-two, which is depleted, so it stays blocked.
    await grant(h, "acct-one", 10_000n, "one-2");
    await quiet();
    expect(fake.callsTo("key/unblock", shared)).toBe(0);

    await grant(h, "acct-two", 10_000n, "two-2");
    await waitFor(() => fake.callsTo("key/unblock", shared) === 1);
    await quiet();
    expect(fake.calls.filter((sent) => sent.principal === shared).map((sent) => sent.route)).toEqual(["key/block", "key/unblock"]);
  });

  it("one block when two workers charge the same account across the threshold at once", async () => {
    const { cost } = service;
    const priceBook = loadPriceBook(h.settings.pricingFile);
    const eventsFor = (account: string, prefix: string): UsageEvent[] =>
      [1, 2, 3].map((n) => {
        const read = normaliseCallbackItem(call(`${prefix}-${n}`, account), { billingAccountFrom: DEFAULT_BILLING_ACCOUNT_FROM });
        if (!read.ok) throw new Error(JSON.stringify(read.rejected));
        return read.event;
      });
    const accounts = Array.from({ length: 10 }, (_, n) => `race-${n}`);
    for (const account of accounts) await grant(h, account, cost * 4n, `${account}-grant`);
    // Two pools: two workers' connections, each charging three calls to every account at once.
    const pools = [new pg.Pool({ connectionString: h.settings.databaseUrl }), new pg.Pool({ connectionString: h.settings.databaseUrl })];
    try {
      const settings = { priceBook, lowBalanceThresholds: [], enforcement: h.settings.enforcement };
      await Promise.all(
        pools.flatMap((pool, worker) => accounts.map((account) => chargeUsageEvents(pool, settings, eventsFor(account, `${account}-w${worker}`)))),
      );
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
    for (const account of accounts) expect(await balanceOf(h, account)).toBe(-2n * cost);
    await waitFor(() => accounts.every((account) => fake.callsTo("key/block", keyHashOf(account)) === 1));
    await quiet();
    for (const account of accounts) expect(fake.callsTo("key/block", keyHashOf(account))).toBe(1);
  });

  it("a worker started with a policy naming a new kind blocks it for accounts already blocked, and lets go of those above a lowered threshold", async () => {
    const { cost } = service;
    const pool = h.deps.database.pool;
    await grant(h, "acct-widened", cost - 1n, "widened-1");
    await grant(h, "acct-lowered", cost - 1n, "lowered-1");
    await charge(h, call("widened-1", "acct-widened"), call("lowered-1", "acct-lowered"));
    await waitFor(() => fake.callsTo("key/block", keyHashOf("acct-widened")) === 1 && fake.callsTo("key/block", keyHashOf("acct-lowered")) === 1);
    expect(fake.callsTo("team/block", "acct-widened")).toBe(0);

    // What a worker does at start, with ENFORCE_ON_DEPLETED=team,key and then ENFORCE_BELOW=-1000:
    // every blocked account's team (one each, never blocked under the key policy) is blocked.
    const { rows: blocked } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM enforcement_accounts WHERE state = 'blocked'");
    expect(await enforceCurrentPolicy(pool, { blocks: ["team", "key"], below: 0n })).toBe(blocked[0]!.n);
    await waitFor(() => fake.callsTo("team/block", "acct-widened") === 1 && fake.callsTo("team/block", "acct-lowered") === 1);
    await enforceCurrentPolicy(pool, { blocks: ["key"], below: -1000n });
    // acct-lowered (at -1) is above -1000 now: its key and team are let go; so is every account above it.
    await waitFor(() => fake.callsTo("key/unblock", keyHashOf("acct-lowered")) === 1 && fake.callsTo("team/unblock", "acct-lowered") === 1);
    expect(fake.callsTo("key/unblock", keyHashOf("acct-widened"))).toBe(1);
  });

  it("sends a principal's state once more a minute after a call whose deliverer died before its answer", async () => {
    const pool = h.deps.database.pool;
    const interrupted = keyHashOf("interrupted");
    // As a deliverer leaves it when killed mid-call: the call counted as sent, no answer recorded.
    await pool.query("INSERT INTO enforcement_principals (kind, principal, state) VALUES ('key', $1, 'blocked')", [interrupted]);
    await pool.query(
      "INSERT INTO enforcement_actions (kind, principal, action, billing_account_id, sends) VALUES ('key', $1, 'block', 'acct-interrupted', 1)",
      [interrupted],
    );
    await waitFor(() => fake.callsTo("key/block", interrupted) === 1);
    await waitFor(async () => (await pool.query("SELECT 1 FROM enforcement_actions WHERE principal = $1 AND resend", [interrupted])).rowCount === 1);
    const { rows } = await pool.query<{ uncertain: boolean; due_in: number }>(
      `SELECT bool_or(uncertain) AS uncertain, max(extract(epoch FROM next_attempt_at - now()))::float8 AS due_in
       FROM enforcement_actions WHERE principal = $1`,
      [interrupted],
    );
    expect(rows[0]!.uncertain).toBe(true);
    expect(rows[0]!.due_in).toBeGreaterThan(50);
    expect(rows[0]!.due_in).toBeLessThanOrEqual(60);
  });

  for (const storeAuditLogs of [false, true]) {
    const answer = storeAuditLogs ? "404 'Key … not found', with store_audit_logs" : "401 token_not_found_in_db, LiteLLM's default";
    it(`drops a block for a key LiteLLM no longer has (${answer}) after one try and one alert, and delivers the key's next action`, async () => {
      const { cost } = service;
      const account = `acct-key-deleted-${storeAuditLogs ? "audited" : "default"}`;
      const key = keyHashOf(account);
      fake.storeAuditLogs = storeAuditLogs;
      fake.forget(key);
      try {
        await grant(h, account, cost - 1n, `${account}-1`);
        await charge(h, call(`${account}-1`, account));
        await waitFor(() => unknownAlerts(h, key).length === 1);
      } finally {
        fake.storeAuditLogs = false;
        fake.remember(key);
      }
      expect(unknownAlerts(h, key)[0]).toMatchObject({
        billing_account_id: account,
        principal_kind: "key",
        action: "block",
        attempt: 1,
        answer: storeAuditLogs ? "key_not_found" : "key_not_in_database",
      });
      // The key's next action goes out: the block before it holds nothing.
      await grant(h, account, 10_000n, `${account}-2`);
      await waitFor(() => fake.callsTo("key/unblock", key) === 1);
      expect(fake.requestsTo("key/block", key)).toBe(1);
      expect(unknownAlerts(h, key)).toHaveLength(1);
      expect(failedAlerts(h, key)).toEqual([]);
    });
  }

  it("drops each action for a key LiteLLM refuses as malformed (400) after one try, and never records such a key from a payload", async () => {
    const pool = h.deps.database.pool;
    // As recorded before keys were checked at the edge: LiteLLM refuses it, whatever the action.
    const malformed = "key-recorded-before-the-check";
    await pool.query("INSERT INTO enforcement_principals (kind, principal, state) VALUES ('key', $1, 'unblocked')", [malformed]);
    await pool.query(
      "INSERT INTO enforcement_actions (kind, principal, action, billing_account_id) VALUES ('key', $1, 'block', 'acct-malformed'), ('key', $1, 'unblock', 'acct-malformed')",
      [malformed],
    );
    await waitFor(() => unknownAlerts(h, malformed).length === 2);
    expect(unknownAlerts(h, malformed).map((line) => [line.action, line.attempt, line.answer])).toEqual([
      ["block", 1, "key_format_refused"],
      ["unblock", 1, "key_format_refused"],
    ]);
    expect([fake.requestsTo("key/block", malformed), fake.requestsTo("key/unblock", malformed)]).toEqual([1, 1]);
    expect((await pool.query("SELECT 1 FROM enforcement_actions WHERE principal = $1 AND done_at IS NULL", [malformed])).rowCount).toBe(0);

    // A custom-auth or JWT call's user_api_key_hash is no LiteLLM hash: its team is recorded, no key, nothing sent.
    const { cost } = service;
    await grant(h, "acct-custom-auth", cost - 1n, "custom-auth-1");
    await charge(h, call("custom-auth-1", "acct-custom-auth", "not-a-litellm-hash"));
    expect(await balanceOf(h, "acct-custom-auth")).toBeLessThan(0n);
    const { rows } = await pool.query("SELECT kind, principal FROM account_principals WHERE billing_account_id = 'acct-custom-auth'");
    expect(rows).toEqual([{ kind: "team", principal: "acct-custom-auth" }]);
    expect((await pool.query("SELECT 1 FROM enforcement_actions WHERE billing_account_id = 'acct-custom-auth'")).rowCount).toBe(0);
  });

  it("retries while LiteLLM refuses the master key, though its 401 names a key not in its database, and lands the block once it is set right", async () => {
    const { cost } = service;
    const account = "acct-master-key-rotated";
    const key = keyHashOf(account);
    // LiteLLM's master key changed under the workers: theirs is now just a key LiteLLM does not have.
    fake.changeMasterKey("sk-litellm-master-rotated-0c94e1");
    try {
      await grant(h, account, cost - 1n, `${account}-1`);
      await charge(h, call(`${account}-1`, account));
      await waitFor(() => fake.requestsTo("key/block", key) >= 2);
    } finally {
      fake.changeMasterKey(null);
    }
    await waitFor(() => fake.callsTo("key/block", key) === 1);
    const refused = fake.requests.filter((request) => request.principal === key && request.status === 401).length;
    expect(refused).toBeGreaterThanOrEqual(2);
    expect(failedAlerts(h, key).map((line) => [line.attempt, line.final, line.error])).toEqual(
      Array.from({ length: refused }, (_, n) => [n + 1, false, "LiteLLM answered POST /key/block with 401"]),
    );
    expect(unknownAlerts(h, key)).toEqual([]);
    expect(JSON.stringify(h.logs)).not.toContain(MASTER_KEY);
  });

  it("lists an account's keys and actions, and an operator's unblock holds until the next crossing", async () => {
    const { cost } = service;
    const database = { url: h.settings.databaseUrl, name: h.settings.queuePrefix };
    await grant(h, "acct-held", cost - 1n, "held-1");
    await charge(h, call("held-1", "acct-held"));
    await waitFor(() => fake.callsTo("key/block", keyHashOf("acct-held")) === 1);

    const listed = await runOps(database, "enforcement", "list", "--account", "acct-held", "--json");
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toMatchObject({
      accounts: [{ billing_account_id: "acct-held", state: "blocked" }],
      // Both paid; only the key is blocked under this policy.
      principals: [
        { kind: "key", principal: keyHashOf("acct-held"), state: "blocked", first_used_at: "2025-01-24T09:20:46.851Z" },
        { kind: "team", principal: "acct-held", state: "unblocked" },
      ],
      actions: [{ action: "block", principal: keyHashOf("acct-held"), state: "done", attempts: 1 }],
    });

    expect(await runOps(database, "enforcement", "unblock", "acct-nobody")).toMatchObject({ code: 1, stdout: "no account acct-nobody\n" });
    const unblocked = await runOps(database, "enforcement", "unblock", "acct-held");
    expect(unblocked).toMatchObject({ code: 0, stdout: expect.stringContaining("unblock queued") });
    await waitFor(() => fake.callsTo("key/unblock", keyHashOf("acct-held")) === 1);
    // Still depleted, but held open: a further charge blocks nothing.
    await charge(h, call("held-2", "acct-held"));
    await quiet();
    expect(fake.callsTo("key/block", keyHashOf("acct-held"))).toBe(1);
    // Back above the threshold and down again: the next crossing blocks.
    await grant(h, "acct-held", cost * 3n, "held-2");
    await charge(h, call("held-3", "acct-held"), call("held-4", "acct-held"));
    expect(await balanceOf(h, "acct-held")).toBeLessThanOrEqual(0n);
    await waitFor(() => fake.callsTo("key/block", keyHashOf("acct-held")) === 2);
  });
});
