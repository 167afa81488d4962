import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import { Worker } from "bullmq";
import Fastify from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { replayQuarantined } from "../../src/ops/replay-quarantine.js";
import { createRedis } from "../../src/platform/deps.js";
import { JOB_CHARGE_USAGE, USAGE_QUEUE } from "../../src/platform/queue.js";
import { type Harness, useServiceHarness } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { ADMIN_TOKEN } from "../support/test-env.js";
import { usageEvent } from "../support/usage-events.js";

const QUEUE_UI_TOKEN = "test-queue-ui-token-0001";
const QUEUE_API = "/admin/queues/api/queues/usage-events";

const basic = (username: string, password: string) => `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
const OPERATOR = basic("ops-alice", QUEUE_UI_TOKEN);

type Method = "GET" | "POST" | "PUT" | "PATCH";

function queueUi(h: Harness, method: Method, url: string, options: { authorization?: string | null; payload?: object } = {}) {
  const authorization = options.authorization === undefined ? OPERATOR : options.authorization;
  return h.app.inject({
    method,
    url,
    headers: authorization === null ? {} : { authorization },
    ...(options.payload === undefined ? {} : { payload: options.payload }),
  });
}

/** Posts `count` calls as one LiteLLM batch (one queued job) and returns their idempotency keys. */
async function postCalls(h: Harness, prefix: string, count: number, account: string): Promise<string[]> {
  const keys = Array.from({ length: count }, (_, index) => `${prefix}-${index}`);
  const response = await h.postCallback(keys.map((key) => litellmPayload(key, account)));
  expect(response.statusCode).toBe(202);
  return keys;
}

async function waitingJobIds(h: Harness): Promise<string[]> {
  const jobs = await h.deps.usageQueue.getJobs(["waiting"]);
  return jobs.map((job) => job.id!).sort();
}

async function quarantinedKeys(h: Harness, reason: string, prefix: string): Promise<string[]> {
  const { rows } = await h.deps.database.pool.query<{ idempotency_key: string }>(
    "SELECT idempotency_key FROM quarantine WHERE reason = $1 AND stage = 'worker' AND idempotency_key LIKE $2 ORDER BY 1",
    [reason, `${prefix}-%`],
  );
  return rows.map((row) => row.idempotency_key);
}

const sorted = (keys: string[]) => [...keys].sort();

// A forged charge: 12.5M credits to an account that never made the call.
const FORGED_EVENT = usageEvent({ idempotencyKey: "forged-1", billingAccountId: "team-victim", model: "gpt-4o", promptTokens: 500_000 });

/** Writes that no setting allows: each would forge a charge or destroy the queue. */
function neverAllowedWrites(jobId: string): Array<[Method, string, object?]> {
  return [
    ["POST", `${QUEUE_API}/add`, { name: JOB_CHARGE_USAGE, data: { events: [FORGED_EVENT] }, options: {} }],
    ["PATCH", `${QUEUE_API}/${jobId}/update-data`, { jobData: { events: [FORGED_EVENT] } }],
    ["PUT", `${QUEUE_API}/obliterate`, {}],
    ["PUT", `${QUEUE_API}/concurrency`, { concurrency: 1 }],
    ["PUT", `${QUEUE_API}/rate-limit`, { max: 1, duration: 60_000 }],
    ["PATCH", `${QUEUE_API}/${jobId}/priority`, { priority: 1 }],
    ["PUT", `${QUEUE_API}/${jobId}/remove-unprocessed-children`],
    ["PUT", `${QUEUE_API}/job-schedulers/any/remove`],
  ];
}

describe("queue UI without QUEUE_UI_TOKEN", () => {
  const h = useServiceHarness({}, { worker: false });

  it("is not served at all", async () => {
    for (const url of ["/admin/queues", "/admin/queues/api/queues", `${QUEUE_API}/empty`]) {
      expect((await queueUi(h, "GET", url, { authorization: basic("admin", ADMIN_TOKEN) })).statusCode).toBe(404);
    }
    expect((await queueUi(h, "PUT", `${QUEUE_API}/empty`, { authorization: basic("admin", ADMIN_TOKEN) })).statusCode).toBe(404);
  });
});

describe("queue UI, read-only (QUEUE_UI_ACTIONS unset)", () => {
  const h = useServiceHarness({ QUEUE_UI_TOKEN }, { worker: false });

  it("opens only with QUEUE_UI_TOKEN as the password, never with ADMIN_TOKEN", async () => {
    expect((await queueUi(h, "GET", "/admin/queues", { authorization: null })).statusCode).toBe(401);
    const refused = await queueUi(h, "GET", "/admin/queues/api/queues", { authorization: basic("admin", ADMIN_TOKEN) });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers["www-authenticate"]).toMatch(/^Basic /);
    expect(refused.json().error.code).toBe("unauthorized");
    expect((await queueUi(h, "GET", "/admin/queues", { authorization: `Bearer ${ADMIN_TOKEN}` })).statusCode).toBe(401);
    expect((await queueUi(h, "GET", "/admin/queues", { authorization: basic("", QUEUE_UI_TOKEN) })).statusCode).toBe(401);
    expect((await queueUi(h, "GET", "/admin/queues", { authorization: basic(QUEUE_UI_TOKEN, "wrong") })).statusCode).toBe(401);
    expect((await queueUi(h, "GET", "/admin/queues")).statusCode).toBe(200);
    expect((await queueUi(h, "GET", "/admin/queues/api/queues")).statusCode).toBe(200);
  });

  it("refuses empty, clean, add, update-data and obliterate with 403, and the jobs stay", async () => {
    await postCalls(h, "ro-a", 5, "team-ro");
    await postCalls(h, "ro-b", 5, "team-ro");
    const before = await waitingJobIds(h);
    expect(before).toHaveLength(2);
    const writes: Array<[Method, string, object?]> = [
      ["PUT", `${QUEUE_API}/empty`],
      ["PUT", `${QUEUE_API}/clean/waiting`],
      ["PUT", `${QUEUE_API}/${before[0]}/clean`],
      ["PUT", `${QUEUE_API}/retry/failed`],
      ["PUT", "/admin/queues/api/queues/pause"],
      ...neverAllowedWrites(before[0]!),
    ];
    for (const [method, url, payload] of writes) {
      const response = await queueUi(h, method, url, { payload });
      expect({ url, status: response.statusCode, code: response.json().error?.code }).toEqual({ url, status: 403, code: "queue_ui_read_only" });
    }
    expect(await waitingJobIds(h)).toEqual(before);
    expect(await h.deps.usageQueue.isPaused()).toBe(false);
    const { rows } = await h.deps.database.pool.query("SELECT count(*)::int AS n FROM quarantine");
    expect(rows[0].n).toBe(0);
  });

  it("is also refused by Bull Board itself (405) when it stands alone, read-only", async () => {
    await postCalls(h, "ro-bb", 3, "team-ro");
    const before = await waitingJobIds(h);
    const board = Fastify();
    const serverAdapter = new FastifyAdapter();
    serverAdapter.setBasePath("/board");
    createBullBoard({ queues: [new BullMQAdapter(h.deps.usageQueue, { readOnlyMode: true })], serverAdapter });
    await board.register(serverAdapter.registerPlugin(), { prefix: "/board" });
    try {
      const api = "/board/api/queues/usage-events";
      const writes: Array<[Method, string, object?]> = [
        ["PUT", `${api}/empty`],
        ["PUT", `${api}/clean/waiting`],
        ["PUT", `${api}/${before[0]}/clean`],
        ["POST", `${api}/add`, { name: JOB_CHARGE_USAGE, data: { events: [FORGED_EVENT] }, options: {} }],
        ["PATCH", `${api}/${before[0]}/update-data`, { jobData: { events: [FORGED_EVENT] } }],
        ["PUT", `${api}/obliterate`, {}],
      ];
      for (const [method, url, payload] of writes) {
        const response = await board.inject({ method, url, ...(payload === undefined ? {} : { payload }) });
        expect({ url, status: response.statusCode }).toEqual({ url, status: 405 });
      }
      // Pausing every queue is not refused: it skips read-only queues and answers 200.
      expect((await board.inject({ method: "PUT", url: "/board/api/queues/pause" })).statusCode).toBe(200);
      expect(await h.deps.usageQueue.isPaused()).toBe(false);
      expect(await waitingJobIds(h)).toEqual(before);
    } finally {
      await board.close();
    }
  });
});

describe("queue UI with QUEUE_UI_ACTIONS=on, no worker", () => {
  const h = useServiceHarness({ QUEUE_UI_TOKEN, QUEUE_UI_ACTIONS: "on" }, { worker: false });

  // No worker runs here, so nothing is charged either way; what a test leaves queued is
  // dropped so that the next test's counts are its own.
  afterEach(async () => {
    await h.deps.usageQueue.obliterate({ force: true });
  });

  it("still refuses add, update-data, obliterate and every other write it has no use for (403)", async () => {
    await postCalls(h, "never", 5, "team-never");
    const before = await waitingJobIds(h);
    for (const [method, url, payload] of neverAllowedWrites(before[0]!)) {
      const response = await queueUi(h, method, url, { payload });
      expect({ url, status: response.statusCode, code: response.json().error?.code }).toEqual({
        url,
        status: 403,
        code: "queue_ui_action_refused",
      });
    }
    expect(await waitingJobIds(h)).toEqual(before);
    const job = await h.deps.usageQueue.getJob(before[0]!);
    expect(JSON.stringify(job!.data)).not.toContain("forged");
  });

  it("empty keeps every accepted call in quarantine as removed_from_queue, then removes the jobs", async () => {
    const keys = [...(await postCalls(h, "empty-a", 40, "team-empty")), ...(await postCalls(h, "empty-b", 60, "team-empty"))];
    // A batch with an item the receiver refused queues that item for quarantine as well.
    const refusedItem = { ...litellmPayload("empty-refused", "team-empty"), prompt_tokens: -1 };
    expect((await h.postCallback([litellmPayload("empty-c-0", "team-empty"), refusedItem])).statusCode).toBe(207);
    keys.push("empty-c-0");
    // A job this version cannot read is kept whole.
    await h.deps.usageQueue.add(JOB_CHARGE_USAGE, { events: "not a list" }, { jobId: "unreadable-job" });
    expect(await waitingJobIds(h)).toHaveLength(5);

    const response = await queueUi(h, "PUT", `${QUEUE_API}/empty`);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ removed: 5, quarantined: 103, notRemoved: [] });
    expect(await waitingJobIds(h)).toEqual([]);
    expect(await quarantinedKeys(h, "removed_from_queue", "empty")).toEqual(sorted(keys));
    const { rows } = await h.deps.database.pool.query<{ stage: string; reason: string; item: unknown }>(
      "SELECT stage, reason, item FROM quarantine WHERE reason <> 'removed_from_queue' ORDER BY id",
    );
    expect(rows).toEqual([
      { stage: "worker", reason: "invalid_job_event", item: { events: "not a list" } },
      expect.objectContaining({ stage: "receiver", item: expect.objectContaining({ id: "empty-refused" }) }),
    ]);
    expect(h.alerts("event_quarantined").filter((line) => String(line.idempotency_key).startsWith("empty-"))).toHaveLength(102);
  });

  it("clean waiting keeps every accepted call in quarantine, then removes the jobs", async () => {
    const keys = [...(await postCalls(h, "clean-a", 10, "team-clean")), ...(await postCalls(h, "clean-b", 10, "team-clean"))];
    const response = await queueUi(h, "PUT", `${QUEUE_API}/clean/waiting`);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ removed: 2, quarantined: 20, notRemoved: [] });
    expect(await waitingJobIds(h)).toEqual([]);
    expect(await quarantinedKeys(h, "removed_from_queue", "clean")).toEqual(sorted(keys));
  });

  it("cleaning one job keeps its calls in quarantine and leaves the other jobs alone", async () => {
    const removedKeys = await postCalls(h, "job-a", 10, "team-job");
    await postCalls(h, "job-b", 10, "team-job");
    const jobs = await h.deps.usageQueue.getJobs(["waiting"]);
    const target = jobs.find((job) => (job.data.events as Array<{ idempotencyKey: string }>)[0]!.idempotencyKey === "job-a-0")!;
    const response = await queueUi(h, "PUT", `${QUEUE_API}/${target.id}/clean`);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ removed: 1, quarantined: 10, notRemoved: [] });
    expect(await h.deps.usageQueue.getJob(target.id!)).toBeUndefined();
    expect(await waitingJobIds(h)).toHaveLength(1);
    expect(await quarantinedKeys(h, "removed_from_queue", "job")).toEqual(sorted(removedKeys));
  });

  it("leaves a job a worker holds, says so, and keeps its calls in quarantine as well", async () => {
    const keys = await postCalls(h, "held", 5, "team-held");
    const connection = createRedis(h.settings.redis, { forWorker: true });
    const worker = new Worker(USAGE_QUEUE, null, { connection, prefix: h.settings.queuePrefix, autorun: false });
    try {
      const job = (await worker.getNextJob("held-token"))!;
      const single = await queueUi(h, "PUT", `${QUEUE_API}/${job.id}/clean`);
      expect(single.statusCode).toBe(409);
      expect(single.json().error).toMatchObject({ code: "job_active", removed: 0, quarantined: 5, notRemoved: [{ jobId: job.id }] });
      const all = await queueUi(h, "PUT", `${QUEUE_API}/clean/active`);
      expect(all.json()).toMatchObject({ removed: 0, notRemoved: [{ jobId: job.id, reason: expect.stringMatching(/locked/) }] });
      expect(await job.getState()).toBe("active");
      // The worker will charge them; a replay of these rows finds them charged and charges nothing.
      expect(await quarantinedKeys(h, "removed_from_queue", "held")).toEqual(sorted(keys));
    } finally {
      await worker.close(true);
      await connection.quit();
    }
  });

  it("answers 404 for another queue or an unknown job, and 400 for a state it does not clean", async () => {
    expect((await queueUi(h, "PUT", "/admin/queues/api/queues/other/empty")).statusCode).toBe(404);
    expect((await queueUi(h, "PUT", `${QUEUE_API}/no-such-job/clean`)).statusCode).toBe(404);
    const latest = await queueUi(h, "PUT", `${QUEUE_API}/clean/latest`);
    expect(latest.statusCode).toBe(400);
    expect(latest.json().error.code).toBe("invalid_state");
  });

  it("passes pause and resume through to Bull Board", async () => {
    expect((await queueUi(h, "PUT", `${QUEUE_API}/pause`)).statusCode).toBe(200);
    expect(await h.deps.usageQueue.isPaused()).toBe(true);
    expect((await queueUi(h, "PUT", "/admin/queues/api/queues/resume")).statusCode).toBe(200);
    expect(await h.deps.usageQueue.isPaused()).toBe(false);
  });

  it("logs one line per write, with who, from where, what and its outcome, and never the token", async () => {
    const from = h.logs.length;
    await postCalls(h, "log", 4, "team-log");
    await queueUi(h, "POST", `${QUEUE_API}/add`, { payload: { name: JOB_CHARGE_USAGE, data: { events: [FORGED_EVENT] } } });
    await queueUi(h, "PUT", `${QUEUE_API}/empty`);
    await queueUi(h, "PUT", `${QUEUE_API}/pause`, { authorization: basic(QUEUE_UI_TOKEN, QUEUE_UI_TOKEN) });
    await queueUi(h, "PUT", `${QUEUE_API}/resume`, { authorization: basic("admin", ADMIN_TOKEN) });
    await queueUi(h, "GET", "/admin/queues/api/queues");
    const lines = h.logs.slice(from).filter((line) => line.msg === "queue ui action");
    expect(lines).toEqual([
      expect.objectContaining({
        level: 40,
        who: "ops-alice",
        ip: "127.0.0.1",
        method: "POST",
        route: "/admin/queues/api/queues/:queueName/add",
        params: { queueName: "usage-events" },
        status: 403,
        outcome: "refused",
      }),
      expect.objectContaining({
        level: 40,
        who: "ops-alice",
        method: "PUT",
        route: "/admin/queues/api/queues/:queueName/empty",
        status: 200,
        outcome: "removed",
        removed: 1,
        quarantined: 4,
        notRemoved: [],
      }),
      expect.objectContaining({ level: 30, who: "[redacted]", route: "/admin/queues/api/queues/:queueName/pause", outcome: "bull_board", status: 200 }),
      expect.objectContaining({ level: 40, who: null, route: "/admin/queues/api/queues/:queueName/resume", outcome: "unauthorized", status: 401 }),
    ]);
    const logged = JSON.stringify(h.logs);
    for (const secret of [QUEUE_UI_TOKEN, ADMIN_TOKEN, OPERATOR.slice("Basic ".length)]) expect(logged).not.toContain(secret);
    await h.deps.usageQueue.resume();
  });
});

describe("queue UI removals, then quarantine replay, with a worker", () => {
  const h = useServiceHarness({ QUEUE_UI_TOKEN, QUEUE_UI_ACTIONS: "on" });

  it("charges every call of three emptied batches exactly once", async () => {
    // Paused from the UI, so the worker leaves the batches queued for the operator to empty.
    expect((await queueUi(h, "PUT", `${QUEUE_API}/pause`)).statusCode).toBe(200);
    const keys: string[] = [];
    for (const batch of [1, 2, 3]) keys.push(...(await postCalls(h, `replay-${batch}`, 100, `team-replay-${batch}`)));
    expect(await waitingJobIds(h)).toHaveLength(3);

    const emptied = await queueUi(h, "PUT", `${QUEUE_API}/empty`);
    expect(emptied.json()).toEqual({ removed: 3, quarantined: 300, notRemoved: [] });
    expect(await quarantinedKeys(h, "removed_from_queue", "replay")).toEqual(sorted(keys));
    expect((await queueUi(h, "PUT", `${QUEUE_API}/resume`)).statusCode).toBe(200);

    const pool = h.deps.database.pool;
    const replay = () => replayQuarantined(pool, h.deps.usageQueue, { billingAccountFrom: h.settings.billingAccountFrom, waitMs: 20_000 });
    expect(await replay()).toMatchObject({ ran: true, report: { replayed: 300, charged: 300, stillPending: 0 } });
    await h.drainQueue();
    // A second replay finds nothing left to send back.
    expect(await replay()).toMatchObject({ ran: true, report: { replayed: 0, refusedBeforeSending: 0 } });
    await h.drainQueue();

    const { rows } = await pool.query<{ idempotency_key: string; receipts: number }>(
      "SELECT idempotency_key, count(*)::int AS receipts FROM charge_receipts WHERE idempotency_key LIKE 'replay-%' GROUP BY 1 ORDER BY 1",
    );
    expect(rows.map((row) => row.idempotency_key)).toEqual(sorted(keys));
    expect(rows.every((row) => row.receipts === 1)).toBe(true);
    const { rows: balances } = await pool.query<{ id: string; balance: string }>(
      "SELECT id, balance_credits::text AS balance FROM accounts WHERE id LIKE 'team-replay-%' ORDER BY id",
    );
    // 100 calls of LiteLLM's example payload at 2,250 credits each.
    expect(balances).toEqual([1, 2, 3].map((batch) => ({ id: `team-replay-${batch}`, balance: "-225000" })));
  });
});
