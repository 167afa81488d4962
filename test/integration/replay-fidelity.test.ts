import { spawn } from "node:child_process";
import pg from "pg";
import { describe, expect, it } from "vitest";
import type { BillingAccountSource } from "../../src/platform/config.js";
import { withTransaction } from "../../src/platform/db/client.js";
import { normaliseCallbackItem } from "../../src/litellm/normalise.js";
import { sanitiseCallbackItem } from "../../src/litellm/sanitise.js";
import { REPLAY_LOCK_KEY, replayableEvent, replayQuarantined } from "../../src/ops/replay-quarantine.js";
import { insertQuarantined, listQuarantined, quarantineEntry, quarantineRejectedItems } from "../../src/books/quarantine.js";
import type { QuarantineReason } from "../../src/books/quarantine-reasons.js";
import type { UsageEvent } from "../../src/usage/usage-event.js";
import { type Harness, useServiceHarness, useTestDatabase } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { runOps, runOpsWith } from "../support/ops-cli.js";
import { seededRandom } from "../support/random.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { TEST_REDIS_URL } from "../support/test-env.js";
import { redactedUrl } from "../../src/platform/config.js";

const ITEMS_PER_SOURCE_ORDER = 2500;
const SOURCE_ORDERS: BillingAccountSource[][] = [
  ["key_metadata", "team", "user"],
  ["end_user", "spend_logs_metadata", "org"],
];

const USAGE_PATHS = [
  "prompt_tokens", "completion_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "prompt_tokens_details",
  "prompt_tokens_details.cached_tokens", "prompt_tokens_details.cache_creation_tokens", "prompt_tokens_details.audio_tokens",
  "prompt_tokens_details.web_search_requests", "prompt_tokens_details.cache_creation_token_details",
  "prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens", "completion_tokens_details",
  "completion_tokens_details.reasoning_tokens", "completion_tokens_details.audio_tokens", "server_tool_use", "server_tool_use.web_search_requests",
];

/** Every field billing reads, and the objects on the way to them. */
const BILLING_PATHS = [
  "id", "litellm_call_id", "status", "cache_hit", "model", "model_group", "custom_llm_provider", "call_type", "prompt_tokens",
  "completion_tokens", "response_cost", "startTime", "endTime", "end_user", "metadata", "hidden_params", "response",
  "model_map_information", "model_map_information.model_map_key", "model_map_information.model_map_value",
  "model_map_information.model_map_value.input_cost_per_token", "model_map_information.model_map_value.output_cost_per_token",
  "model_map_information.model_map_value.cache_read_input_token_cost", "model_map_information.model_map_value.input_cost_per_second",
  "model_map_information.model_map_value.x\u0000_cost_per_second", "model_map_information.model_map_value.search_context_cost_per_query",
  "model_map_information.model_map_value.search_context_cost_per_query.search_context_size_low",
  "model_parameters", "model_parameters.service_tier", "model_parameters.web_search_options", "model_parameters.web_search_options.search_context_size",
  "metadata.user_api_key_team_id", "metadata.user_api_key_user_id", "metadata.user_api_key_org_id", "metadata.user_api_key_end_user_id",
  "metadata.spend_logs_metadata", "metadata.spend_logs_metadata.billing_account_id", "metadata.user_api_key_auth_metadata",
  "metadata.user_api_key_auth_metadata.billing_account_id", "metadata.user_api_key_hash", "metadata.usage_object", "hidden_params.usage_object", "response.usage",
  ...["metadata.usage_object", "hidden_params.usage_object", "response.usage"].flatMap((usage) => USAGE_PATHS.map((path) => `${usage}.${path}`)),
];

const HOSTILE_VALUES: unknown[] = [
  [], [1, "a"], {}, { a: 1 }, "x".repeat(1500), "a\u0000b", "\ud800x", "x\udc00", "\\u0000", "\uFFFD", Infinity, -0, null, "", "None",
  0, 1, 12, 3.5, -1, 2 ** 31, 2 ** 53 + 2, 5e-324, true, false, "priority", "flex", "low", "high", "team-\u{1d49c}", "caf\u0065\u0301",
  "2025-01-24 09:20:46.847371", "2025-02-30 10:00:00", 1.7e9, 1e-7, "15", "acct-ok",
];

/** Valid LiteLLM payloads with every detail billing reads, then 0 to 3 fields set to anything. */
function itemGenerator(seed: number) {
  const next = seededRandom(seed);
  const int = (below: number) => Math.floor(next() * below);
  const pick = <T,>(choices: readonly T[]): T => choices[int(choices.length)]!;
  let serial = 0;
  const usage = () => {
    const prompt = 1000 + int(5000);
    return {
      prompt_tokens: prompt,
      completion_tokens: 200 + int(500),
      prompt_tokens_details: { cached_tokens: int(400), cache_creation_tokens: int(100), audio_tokens: 0, cache_creation_token_details: { ephemeral_1h_input_tokens: int(50) } },
      completion_tokens_details: { reasoning_tokens: int(150), audio_tokens: 0 },
      server_tool_use: { web_search_requests: int(2) },
    };
  };
  return (): Record<string, unknown> => {
    serial += 1;
    const base = litellmPayload(`prop-${seed}-${serial}`, next() < 0.7 ? `team-${int(5)}` : null, {
      prompt_tokens: 6000,
      completion_tokens: 700,
      cache_hit: next() < 0.1 ? true : null,
      end_user: next() < 0.3 ? `end-${int(5)}` : "",
      model_parameters: { service_tier: pick(["priority", "flex", "default"]), web_search_options: { search_context_size: pick(["low", "medium", "high"]) } },
      metadata: {
        user_api_key_user_id: next() < 0.5 ? `user-${int(5)}` : null,
        user_api_key_org_id: next() < 0.5 ? `org-${int(5)}` : null,
        spend_logs_metadata: next() < 0.5 ? { billing_account_id: `claimed-${int(5)}` } : null,
        user_api_key_auth_metadata: next() < 0.3 ? { billing_account_id: `key-acct-${int(5)}` } : {},
        usage_object: next() < 0.5 ? usage() : null,
      },
      hidden_params: { usage_object: next() < 0.7 ? usage() : null },
    });
    const item = structuredClone(base) as Record<string, unknown>;
    (item.model_map_information as { model_map_value: Record<string, unknown> }).model_map_value.input_cost_per_second = next() < 0.1 ? 0.01 : null;
    for (let change = int(4); change > 0; change--) setPath(item, pick(BILLING_PATHS).split("."), next() < 0.15 ? undefined : pick(HOSTILE_VALUES));
    return item;
  };
}

function setPath(item: Record<string, unknown>, path: string[], value: unknown): void {
  let at = item;
  for (const step of path.slice(0, -1)) {
    const inner = at[step];
    if (typeof inner !== "object" || inner === null || Array.isArray(inner)) at[step] = {};
    at = at[step] as Record<string, unknown>;
  }
  if (value === undefined) delete at[path.at(-1)!];
  else at[path.at(-1)!] = structuredClone(value);
}

function normalised(item: unknown): UsageEvent {
  const result = normaliseCallbackItem(item, { billingAccountFrom: SOURCE_ORDERS[0]! });
  if (!result.ok) throw new Error(`not a valid item: ${JSON.stringify(result.rejected.issues)}`);
  return result.event;
}

/** What the worker reads of an event: it travels through Redis as JSON. */
const asJson = (value: unknown) => JSON.parse(JSON.stringify(value));

describe("what quarantine keeps is what billing reads, or replay refuses it", () => {
  const db = useTestDatabase();

  it.each(SOURCE_ORDERS.map((order, index) => [order.join(","), order, index] as const))(
    "for generated items (BILLING_ACCOUNT_FROM=%s), through PostgreSQL jsonb",
    async (_name, billingAccountFrom, index) => {
      const nextItem = itemGenerator(1400 + index);
      const items = Array.from({ length: ITEMS_PER_SOURCE_ORDER }, nextItem);
      const options = { billingAccountFrom };
      // Through the receiver's own path: sanitised, stored by quarantineRejectedItems, read back by replay.
      const reason = `property-${index}`;
      await quarantineRejectedItems(
        db.pool,
        items.map((item, n) => ({ reason: `${reason}-${n}`, idempotencyKey: null, issues: [], item: sanitiseCallbackItem(item) })),
      );
      const rows = (await listQuarantined(db.pool, { limit: 100_000 })).filter((row) => row.reason.startsWith(`${reason}-`));
      expect(rows).toHaveLength(items.length);
      const tally = { sameEvent: 0, sameRefusal: 0, notKept: 0 };
      for (const row of rows) {
        const original = items[Number(row.reason.slice(reason.length + 1))]!;
        const expected = normaliseCallbackItem(original, options);
        const replayed = replayableEvent(row, options);
        const context = JSON.stringify({ original: String(JSON.stringify(original)).slice(0, 3000), kept: row.item });
        if (!replayed.ok && replayed.reason === "not_kept") {
          expect(replayed.issues, context).toEqual([{ path: expect.any(String), message: expect.stringMatching(/^not kept exactly: ./) }]);
          tally.notKept += 1;
        } else if (replayed.ok) {
          expect(expected.ok, context).toBe(true);
          expect(asJson(replayed.event), context).toEqual(asJson(expected.ok && expected.event));
          tally.sameEvent += 1;
        } else {
          expect(expected.ok, context).toBe(false);
          expect({ reason: replayed.reason, issues: replayed.issues }, context).toEqual(
            expected.ok ? null : { reason: expected.rejected.reason, issues: expected.rejected.issues },
          );
          tally.sameRefusal += 1;
        }
      }
      // The generator reaches every branch, many times over.
      expect(tally.sameEvent).toBeGreaterThan(ITEMS_PER_SOURCE_ORDER / 5);
      expect(tally.sameRefusal).toBeGreaterThan(ITEMS_PER_SOURCE_ORDER / 10);
      expect(tally.notKept).toBeGreaterThan(ITEMS_PER_SOURCE_ORDER / 10);
    },
    60_000,
  );

  it("keeps the usage events the worker refused exactly, and replays them as they were", async () => {
    const nextItem = itemGenerator(77);
    const events: UsageEvent[] = [];
    while (events.length < 1000) {
      const result = normaliseCallbackItem(nextItem(), { billingAccountFrom: SOURCE_ORDERS[0]! });
      if (result.ok) events.push(result.event);
    }
    events.push(
      { ...events[0]!, idempotencyKey: "edge-1", model: `m-${"\u{1f600}".repeat(200)}`, promptTokens: 2_147_483_647, reportedCostUsd: "999999.999999999999" },
      { ...events[1]!, idempotencyKey: "edge-2", billingAccountId: "caf\u00e9", gatewayRates: { input_cost_per_token: "1.25e-7", output_cost_per_token: "0" } },
    );
    // A reason of its own for each event, none a catalog reason (as rows an older version wrote may
    // hold): no two rows share a fingerprint, and each row names its event.
    const eventTag = (n: number) => `event-${n}` as QuarantineReason;
    await withTransaction(db.pool, (client) =>
      insertQuarantined(client, events.map((event, n) => quarantineEntry("worker", eventTag(n), { event }, { message: "kept whole" }))),
    );
    const rows = (await listQuarantined(db.pool, { limit: 100_000 })).filter((row) => row.reason.startsWith("event-"));
    expect(rows).toHaveLength(events.length);
    for (const row of rows) {
      expect(replayableEvent(row, { billingAccountFrom: [] })).toEqual({ ok: true, event: asJson(events[Number(row.reason.slice("event-".length))]) });
    }
  });

  it("refuses rows an older version kept lossily: markers, cut text, NUL and lone surrogates rewritten", () => {
    const legacy = (change: Record<string, unknown>) => ({ stage: "receiver" as const, reason: "invalid_payload", item: { ...sanitiseCallbackItem(litellmPayload("legacy-1", "team-legacy")), ...change } });
    const options = { billingAccountFrom: SOURCE_ORDERS[0]! };
    const refusal = (change: Record<string, unknown>) => replayableEvent(legacy(change), options);
    expect(replayableEvent(legacy({}), options)).toMatchObject({ ok: true });
    expect(refusal({ metadata: { user_api_key_team_id: "team-legacy", usage_object: { not_a_scalar: "array" } } })).toEqual({
      ok: false,
      reason: "not_kept",
      issues: [{ path: "metadata.usage_object", message: "not kept exactly: array (an older copy kept only that)" }],
    });
    expect(refusal({ model: `${"g".repeat(1024)}…(5000 characters)` })).toMatchObject({ reason: "not_kept", issues: [{ path: "model" }] });
    expect(refusal({ model: "gpt-4o\\u0000" })).toMatchObject({ reason: "not_kept", issues: [{ path: "model" }] });
    expect(refusal({ model_group: "group-\uFFFD" })).toMatchObject({ reason: "not_kept", issues: [{ path: "model_group" }] });
    expect(replayableEvent({ stage: "receiver", reason: "invalid_payload", item: { not_an_object: { type: "string" } } }, options)).toMatchObject({ reason: "not_kept", issues: [{ path: "(the item)" }] });
    expect(replayableEvent({ stage: "receiver", reason: "invalid_json", item: { not_json: { bytes: 3 } } }, options)).toMatchObject({ reason: "not_kept" });
    // An event the worker could not read for its NUL, stored with the NUL written as text, reads now: refused.
    const rewritten = { ...normalised(litellmPayload("legacy-2", "team-legacy")), model: "gpt-4o\\u0000" };
    expect(replayableEvent({ stage: "worker", reason: "invalid_job_event", item: rewritten }, options)).toMatchObject({ reason: "not_kept", issues: [{ path: "model" }] });
    expect(replayableEvent({ stage: "worker", reason: "unpriced_model", item: rewritten }, options)).toEqual({ ok: true, event: rewritten });
  });
});

/** LiteLLM's example call with 1,000 prompt tokens, 900 of them cached: 100 × 25 + 900 × 12.5 = 13,750 credits. */
function cachedCall(id: string, metadata: Record<string, unknown>, overrides: Record<string, unknown> = {}) {
  return litellmPayload(id, null, {
    prompt_tokens: 1000,
    completion_tokens: 0,
    response_cost: 0.001375,
    // Not a usage object: billing reads the next one. An older copy kept {not_a_scalar: "array"}
    // here, which replay read as an empty usage object: 1,000 uncached tokens, 25,000 credits.
    metadata: { usage_object: [], ...metadata },
    hidden_params: { usage_object: { prompt_tokens: 1000, completion_tokens: 0, prompt_tokens_details: { cached_tokens: 900 } } },
    ...overrides,
  });
}

async function receiptCredits(h: Harness, key: string): Promise<number | null> {
  const { rows } = await h.deps.database.pool.query<{ credits: string }>("SELECT charged_credits::text AS credits FROM charge_receipts WHERE idempotency_key = $1", [key]);
  return rows[0] ? Number(rows[0].credits) : null;
}

describe("replay charges what the call cost, or refuses and says so", () => {
  const h = useServiceHarness();

  it("charges a fixed item exactly what the original costs, refuses unfixed ones, and counts what the worker did", async () => {
    // A team id that is not an id: refused at the receiver with BILLING_ACCOUNT_FROM=key_metadata,team,user.
    const badTeam = { user_api_key_team_id: 12.5, user_api_key_user_id: "user-fid" };
    const response = await h.postCallback([
      cachedCall("fid-reference", { user_api_key_team_id: "team-fid" }),
      cachedCall("fid-fixed", badTeam),
      cachedCall("fid-nul", badTeam, { model: "gpt-4o\u0000" }),
      cachedCall("fid-long", badTeam, { model_group: "g".repeat(5000) }),
      cachedCall("fid-bad-key", { ...badTeam, user_api_key_auth_metadata: { billing_account_id: "acct\u0007" } }),
      cachedCall("fid-unpriced", badTeam, { model: "acme/unknown", model_map_information: null, response_cost: 0 }),
    ]);
    expect(response.json().rejected.map((rejected: { id: string; reason: string }) => [rejected.id, rejected.reason])).toEqual([
      ["fid-fixed", "invalid_billing_account"],
      ["fid-nul", "invalid_payload"],
      ["fid-long", "invalid_payload"],
      ["fid-bad-key", "invalid_billing_account"],
      ["fid-unpriced", "invalid_billing_account"],
    ]);
    await h.drainQueue();
    expect(await receiptCredits(h, "fid-reference")).toBe(13_750);

    // The operator's fix: the user pays, not the team. The key's account is still not an id.
    const replay = () => replayQuarantined(h.deps.database.pool, h.deps.usageQueue, { billingAccountFrom: ["key_metadata", "user"], waitMs: 20_000 });
    const first = await replay();
    // Refusals come in quarantine id order, which follows each copy's fingerprint: compared by key.
    const refusals = first.ran ? [...first.report.refusals].sort((a, b) => String(a.idempotencyKey).localeCompare(String(b.idempotencyKey))) : [];
    expect(first).toEqual({
      ran: true,
      report: {
        replayed: 2,
        charged: 1,
        alreadyCharged: 0,
        refusedAgain: 1,
        uncharged: 0,
        stillPending: 0,
        refusedBeforeSending: 3,
        refusals: expect.any(Array),
      },
    });
    expect(refusals).toEqual([
      { id: expect.any(String), idempotencyKey: "fid-bad-key", reason: "invalid_billing_account", issues: [expect.objectContaining({ path: "metadata.user_api_key_auth_metadata.billing_account_id" })] },
      {
        id: expect.any(String),
        idempotencyKey: "fid-long",
        reason: "not_kept",
        issues: [{ path: "model_group", message: "not kept exactly: text longer than 1024 characters" }],
      },
      { id: expect.any(String), idempotencyKey: "fid-nul", reason: "not_kept", issues: [{ path: "model", message: "not kept exactly: text holding NUL" }] },
    ]);
    expect(await receiptCredits(h, "fid-fixed")).toBe(13_750);
    for (const key of ["fid-nul", "fid-long", "fid-bad-key", "fid-unpriced"]) expect(await receiptCredits(h, key)).toBeNull();
    const { rows } = await h.deps.database.pool.query("SELECT stage, reason FROM quarantine WHERE idempotency_key = 'fid-unpriced' AND replayed_at IS NULL");
    expect(rows).toEqual([{ stage: "worker", reason: "unpriced_model" }]);

    // Again, nothing fixed: the worker's row is sent and refused again; the rest is refused before sending.
    expect(await replay()).toMatchObject({ ran: true, report: { replayed: 1, charged: 0, refusedAgain: 1, refusedBeforeSending: 3 } });
  });
});

describe("one replay at a time, counted from what happened", () => {
  const h = useServiceHarness();
  const ops = (...args: string[]) => runOps({ url: h.settings.databaseUrl, name: h.settings.queuePrefix }, ...args);
  const ALREADY_RUNNING = "quarantine replay: another replay is running (it holds the replay lock); nothing was sent\n";

  async function quarantineUnpriced(prefix: string, count: number): Promise<string[]> {
    const items = Array.from({ length: count }, (_, n) =>
      litellmPayload(`${prefix}-${n}`, "team-many", { model: "acme/unknown", model_map_information: null, response_cost: 0 }),
    );
    await h.postCallback(items);
    await h.drainQueue();
    return items.map((item) => item.id);
  }

  const quarantinedAlerts = (keys: string[]) => h.alerts("event_quarantined").filter((line) => keys.includes(line.idempotency_key as string)).length;

  it("three concurrent replays of 300 refused items send each once and count each refusal", async () => {
    const keys = await quarantineUnpriced("many", 300);
    expect(quarantinedAlerts(keys)).toBe(300);
    // Paused, the jobs wait, so the first replay is still waiting on them when the others start.
    await h.deps.usageQueue.pause();
    const done: Array<Awaited<ReturnType<typeof ops>>> = [];
    // The first replay's wait outlasts the time two more processes take to start and be refused
    // on a loaded machine; the queue is resumed whatever happens, or every later test would wait
    // on a paused queue.
    const runs = [1, 2, 3].map(() => ops("quarantine", "replay", "--reason", "unpriced_model", "--wait", "150", "--json").then((result) => {
      done.push(result);
      return result;
    }));
    try {
      await waitFor(() => done.length === 2, 120_000);
    } finally {
      await h.deps.usageQueue.resume();
    }
    const results = await Promise.all(runs);
    const refused = results.filter((result) => result.stderr === ALREADY_RUNNING);
    expect(refused).toHaveLength(2);
    for (const result of refused) expect(result).toMatchObject({ code: 1, stdout: "" });
    const [ran] = results.filter((result) => result.stderr !== ALREADY_RUNNING);
    expect(ran!.code).toBe(1);
    expect(JSON.parse(ran!.stdout)).toEqual({
      replayed: 300,
      charged: 0,
      alreadyCharged: 0,
      refusedAgain: 300,
      uncharged: 0,
      stillPending: 0,
      refusedBeforeSending: 0,
      refusals: [],
    });
    await h.drainQueue();
    // Each item refused once more, not three times.
    await waitFor(() => quarantinedAlerts(keys) === 600);
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM quarantine WHERE reason = 'unpriced_model' AND replayed_at IS NULL");
    expect(rows[0].n).toBe(300);
  }, 240_000);

  it("says in one line that a replay is running while another session holds the lock, and sends nothing", async () => {
    const keys = await quarantineUnpriced("locked", 3);
    const holder = new pg.Client({ connectionString: h.settings.databaseUrl });
    await holder.connect();
    try {
      expect((await holder.query("SELECT pg_try_advisory_lock($1) AS locked", [REPLAY_LOCK_KEY])).rows[0].locked).toBe(true);
      expect(await ops("quarantine", "replay", "--wait", "0")).toEqual({ code: 1, stdout: "", stderr: ALREADY_RUNNING });
      expect(await h.deps.usageQueue.getJobCounts("waiting", "active", "delayed")).toEqual({ waiting: 0, active: 0, delayed: 0 });
      const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM quarantine WHERE idempotency_key = ANY($1) AND replayed_at IS NULL", [keys]);
      expect(rows[0].n).toBe(3);
    } finally {
      await holder.end();
    }
    // Replayed once the lock is free: refused again, said, exit 1.
    const replayed = await ops("quarantine", "replay", "--reason", "unpriced_model", "--wait", "20");
    expect(replayed.code).toBe(1);
    expect(replayed.stdout).toMatch(/^sent \d+ item\(s\): 0 charged, 0 already charged, \d+ refused again, 0 not charged \(failed calls\), 0 still pending\n0 refused before sending\n$/);
  });

  it("frees the lock of a replay that was killed", async () => {
    await quarantineUnpriced("killed", 2);
    await h.deps.usageQueue.pause();
    const env = { PATH: process.env.PATH, DATABASE_URL: h.settings.databaseUrl, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: h.settings.queuePrefix };
    const child = spawn(process.execPath, ["dist/bin/ops.js", "quarantine", "replay", "--wait", "60"], { env, stdio: "ignore" });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    const lockHeld = async () => {
      const { rows } = await h.deps.database.pool.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [REPLAY_LOCK_KEY],
      );
      return rows[0]!.n > 0;
    };
    try {
      await waitFor(lockHeld);
      await waitFor(async () => ((await h.deps.usageQueue.getJobCounts("waiting")).waiting ?? 0) > 0);
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
    await waitFor(async () => !(await lockHeld()));
    await h.deps.usageQueue.resume();
    const after = await ops("quarantine", "replay", "--wait", "20", "--json");
    expect(after.stderr).toBe("");
    expect(JSON.parse(after.stdout)).toMatchObject({ stillPending: 0 });
  });

  it("replays nothing for a reason nothing has, exit 0, no stack trace, every time", async () => {
    for (const run of [1, 2, 3]) {
      expect(await ops("quarantine", "replay", "--reason", "none", "--json"), `run ${run}`).toEqual({
        code: 0,
        stdout: `${JSON.stringify({ replayed: 0, charged: 0, alreadyCharged: 0, refusedAgain: 0, uncharged: 0, stillPending: 0, refusedBeforeSending: 0, refusals: [] }, null, 2)}\n`,
        stderr: "",
      });
    }
    expect((await ops("quarantine", "replay", "--wait", "-1")).code).toBe(2);
    expect((await ops("quarantine", "replay", "--wait", "5000")).code).toBe(2);
  });
});

describe("replay sends only to a queue a worker reads", () => {
  // The same Redis server, the next database: its CLIENT LIST shows the harness's worker, which reads database 0's keys.
  const otherDatabase = new URL(TEST_REDIS_URL);
  otherDatabase.pathname = `/${(Number(otherDatabase.pathname.slice(1) || 0) + 1) % 16}`;
  // Replay opens the queue it looks in, which writes its meta key there even where it then sends nothing.
  const unreadPrefix = useQueuePrefix();
  const h = useServiceHarness({ QUEUE_PREFIX: useQueuePrefix({ alsoOn: [otherDatabase.toString()] }) });

  it("sends nothing where no worker reads, says where it looked, and leaves the items pending for a replay that reaches the worker", async () => {
    await h.postCallback([litellmPayload("unread-1", null), litellmPayload("unread-2", null)]);
    await h.drainQueue();
    const pending = async () =>
      (await h.deps.database.pool.query("SELECT id FROM quarantine WHERE reason = 'no_billing_account' AND replayed_at IS NULL ORDER BY id")).rows.map((row) => String(row.id));
    const ids = await pending();
    expect(ids).toHaveLength(2);
    const settings = { DATABASE_URL: h.settings.databaseUrl, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: h.settings.queuePrefix };
    // Another prefix, as ops with its default prefix beside `npm run dev`; the same prefix in another database.
    for (const unread of [{ QUEUE_PREFIX: unreadPrefix, REDIS_URL: TEST_REDIS_URL }, { QUEUE_PREFIX: h.settings.queuePrefix, REDIS_URL: otherDatabase.toString() }]) {
      expect(await runOpsWith({ ...settings, ...unread }, "quarantine", "replay", "--wait", "0", "--json")).toEqual({
        code: 1,
        stdout: "",
        stderr:
          `quarantine replay: no worker reads the queue at QUEUE_PREFIX=${unread.QUEUE_PREFIX} REDIS_URL=${redactedUrl(unread.REDIS_URL)}; nothing was sent ` +
          "and the items stay pending. Start the workers, or run it with the service's QUEUE_PREFIX and REDIS_URL\n",
      });
    }
    expect(await pending()).toEqual(ids);
    for (const [index, id] of ids.entries()) expect((await runOpsWith(settings, "quarantine", "assign", id, `team-unread-${index}`)).code).toBe(0);
    const replayed = await runOpsWith(settings, "quarantine", "replay", "--wait", "20", "--json");
    expect({ code: replayed.code, stderr: replayed.stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(replayed.stdout)).toMatchObject({ replayed: 2, charged: 2, stillPending: 0 });
    expect(await pending()).toEqual([]);
  });
});
