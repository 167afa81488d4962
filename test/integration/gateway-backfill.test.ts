import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { runGatewayBackfill } from "../../src/gateway/backfill.js";
import { reconcileGateway } from "../../src/gateway/reconcile-spend-log.js";
import { createSpendLogPool } from "../../src/litellm/spend-log.js";
import { normaliseCallbackItem } from "../../src/litellm/normalise.js";
import { loadPriceBook } from "../../src/pricing/price-book.js";
import { priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import { enqueueCallbackItems } from "../../src/platform/queue-producer.js";
import { type Harness, useServiceHarness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { spendLogRowOf, useLitellmDatabase } from "../support/litellm-spend-log.js";
import { TEST_REDIS_URL } from "../support/test-env.js";

const litellm = useLitellmDatabase();
const h = useServiceHarness();

const CAPTURED_DIR = fileURLToPath(new URL("../fixtures/litellm/captured/", import.meta.url));
const CAPTURED = readdirSync(CAPTURED_DIR).map((file) => JSON.parse(readFileSync(join(CAPTURED_DIR, file), "utf8")) as Record<string, unknown>);
const HOUR = 3_600_000;

/** A call of one of LiteLLM's captured kinds, paid by a team (as LiteLLM fills it from the key). */
function call(id: string, index: number, time: Date): Record<string, unknown> {
  const kind = CAPTURED[index % CAPTURED.length]!;
  const metadata = { ...(kind.metadata as Record<string, unknown>), user_api_key_team_id: `team-gw-${index % 50}` };
  return { ...kind, id, metadata, startTime: time.getTime() / 1000, endTime: time.getTime() / 1000 + 0.5 };
}

async function ops(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    PATH: process.env.PATH,
    DATABASE_URL: h.settings.databaseUrl,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: h.settings.queuePrefix,
    LITELLM_DATABASE_URL: litellm.url,
  };
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["dist/bin/ops.js", ...args], { env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

async function receipts(h: Harness, prefix: string): Promise<Map<string, number>> {
  const { rows } = await h.deps.database.pool.query<{ idempotency_key: string; charged_credits: string }>(
    "SELECT idempotency_key, charged_credits FROM charge_receipts WHERE idempotency_key LIKE $1",
    [`${prefix}%`],
  );
  return new Map(rows.map((row) => [row.idempotency_key, Number(row.charged_credits)]));
}

async function postInBatches(payloads: Array<Record<string, unknown>>) {
  for (let start = 0; start < payloads.length; start += 500) {
    expect((await h.postCallback(payloads.slice(start, start + 500))).statusCode).toBe(202);
  }
}

describe("gateway reconcile: every call LiteLLM recorded is billed, once", () => {
  it("5,000 calls with 3% of callbacks lost, 1% late and 1% during the backfill: each is charged exactly once at its price", async () => {
    const windowStart = new Date(Date.now() - 3 * HOUR);
    const calls = Array.from({ length: 5_000 }, (_, index) => call(`gw-${index}`, index, new Date(windowStart.getTime() + HOUR + index * 100)));
    const lost = calls.filter((_, index) => index % 100 < 3);
    const late = calls.filter((_, index) => index % 100 === 3);
    const during = calls.filter((_, index) => index % 100 === 4);
    const delivered = calls.filter((_, index) => index % 100 > 4);
    // Rows that must never be charged: cache hits, failures, and calls outside the window.
    const noCharge: Array<Record<string, unknown>> = [
      ...Array.from({ length: 30 }, (_, index) => ({ ...call(`gw-cache-${index}`, index, new Date(windowStart.getTime() + HOUR)), cache_hit: true })),
      ...Array.from({ length: 30 }, (_, index) => ({ ...call(`gw-failed-${index}`, index, new Date(windowStart.getTime() + HOUR)), status: "failure" })),
      ...Array.from({ length: 10 }, (_, index) => call(`gw-before-${index}`, index, new Date(windowStart.getTime() - HOUR))),
    ];
    await litellm.insert([...calls, ...noCharge].map((payload) => spendLogRowOf(payload, new Date(Number(payload.startTime) * 1000))));
    await postInBatches(delivered);
    await h.drainQueue();

    const since = windowStart.toISOString();
    const report = await ops("gateway", "reconcile", "--since", since, "--json");
    expect(report.code).toBe(1);
    const before = JSON.parse(report.stdout);
    expect(before.total).toMatchObject({ litellm_calls: 5_000, billed: 4_750, missing: 250, skipped: 60 });
    // LiteLLM's own spend of what was lost, exactly (each double read as the decimal it stands for).
    const lostSpend = [...lost, ...late, ...during].reduce((sum, payload) => sum + BigInt(Math.round(Number(payload.response_cost) * 1e12)), 0n);
    expect(BigInt(Math.round(Number(before.total.missing_spend_usd) * 1e12))).toBe(lostSpend);

    const applying = ops("gateway", "reconcile", "--since", since, "--apply", "--json");
    await postInBatches(during);
    expect((await applying).code).toBe(1);
    await h.drainQueue();
    await postInBatches(late);
    await h.drainQueue();

    // Every call charged once, at the price its callback would have been charged.
    const book = loadPriceBook(h.settings.pricingFile);
    const charged = await receipts(h, "gw-");
    expect(charged.size).toBe(5_000);
    for (const payload of calls) {
      const normalised = normaliseCallbackItem(payload, { billingAccountFrom: h.settings.billingAccountFrom });
      if (!normalised.ok) throw new Error(`${String(payload.id)} refused`);
      const pricing = priceUsageEvent(normalised.event, book);
      if (!pricing.priced) throw new Error(`${String(payload.id)} unpriced`);
      expect(charged.get(String(payload.id)), String(payload.id)).toBe(Number(pricing.charge.chargedCredits));
    }

    const again = await ops("gateway", "reconcile", "--since", since, "--apply", "--json");
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ total: { missing: 0, billed: 5_000 }, applied: 0, receipts_without_litellm_row: 0 });
    await h.drainQueue();
    expect((await receipts(h, "gw-")).size).toBe(5_000);
  }, 120_000);

  it("says so in one line when LiteLLM's database cannot be read, and charges nothing", async () => {
    const unreadable = await promisify(execFile)(process.execPath, ["dist/bin/ops.js", "gateway", "reconcile", "--since", "2026-01-01"], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: h.settings.databaseUrl,
        REDIS_URL: TEST_REDIS_URL,
        QUEUE_PREFIX: h.settings.queuePrefix,
        LITELLM_DATABASE_URL: `${litellm.url}_missing`,
      },
    }).catch((error: { code: number; stderr: string }) => error);
    expect(unreadable).toMatchObject({ code: 1 });
    expect((unreadable as { stderr: string }).stderr).toMatch(/^spend-ingest: LiteLLM's database \(LITELLM_DATABASE_URL\) cannot be read: .+\n$/);
    expect((await ops("gateway", "reconcile", "--since", "yesterday")).code).toBe(2);
  });
});

describe("gateway reconcile reads each call as its callback would have been read", () => {
  it("bills the key's account from LiteLLM's key table, holds a call whose key is gone, and lets a cache hit never hide its original", async () => {
    const now = new Date(Date.now() + 12 * HOUR);
    const at = (minutes: number) => new Date(now.getTime() - minutes * 60_000);
    await litellm.pool.query(`INSERT INTO "LiteLLM_VerificationToken" (token, metadata) VALUES ('hashed-key-1', '{"billing_account_id": "acct-from-key"}')`);
    const keyed = spendLogRowOf(call("rd-keyed", 0, at(30)), at(30));
    const gone = spendLogRowOf(call("rd-key-gone", 1, at(29)), at(29));
    const original = spendLogRowOf(call("rd-original", 2, at(28)), at(28));
    const batch = { ...spendLogRowOf(call("rd-batch", 3, at(27)), at(27)), call_type: "aretrieve_batch" };
    await litellm.insert([{ ...keyed, api_key: "hashed-key-1" }, { ...gone, api_key: "hashed-key-deleted" }, original, batch]);
    // Only the cache hit that reused rd-original's response arrived: it carries the original's id.
    await h.postCallback([{ ...call("rd-original", 2, at(10)), cache_hit: true }]);
    await h.drainQueue();

    const since = at(60).toISOString();
    const until = now.toISOString();
    const applied = await ops("gateway", "reconcile", "--since", since, "--until", until, "--apply", "--json");
    expect(JSON.parse(applied.stdout).total).toMatchObject({ litellm_calls: 3, missing: 3, skipped: 1 });
    await h.drainQueue();
    const { rows } = await h.deps.database.pool.query<{ idempotency_key: string; billing_account_id: string; charged_credits: string }>(
      "SELECT idempotency_key, billing_account_id, charged_credits FROM charge_receipts WHERE idempotency_key LIKE 'rd-%' ORDER BY idempotency_key",
    );
    expect(rows.map((row) => [row.idempotency_key.replace(/_cache_hit.*/, "_cache_hit…"), row.billing_account_id, Number(row.charged_credits) > 0])).toEqual([
      ["rd-keyed", "acct-from-key", true],
      ["rd-original", "team-gw-2", true],
      ["rd-original_cache_hit…", "team-gw-2", false],
    ]);
    const held = await h.deps.database.pool.query("SELECT reason FROM quarantine WHERE idempotency_key = 'rd-key-gone'");
    expect(held.rows).toEqual([{ reason: "key_metadata_unavailable" }]);
    const again = await ops("gateway", "reconcile", "--since", since, "--until", until, "--json");
    expect(JSON.parse(again.stdout).total).toMatchObject({ billed: 2, quarantined: 1, missing: 0 });
  });
});

describe("the worker's continuous backfill", () => {
  const settings = () => ({
    priceBook: loadPriceBook(h.settings.pricingFile),
    billingAccountFrom: h.settings.billingAccountFrom,
    intervalMs: 5 * 60_000,
    lagMs: 10 * 60_000,
    overlapMs: 60 * 60_000,
  });

  it("catches what LiteLLM writes late on a later run, from its watermark, with the lag and an hour's overlap", async () => {
    const spendLog = createSpendLogPool(litellm.url);
    const deps = { pool: h.deps.database.pool, spendLog, queue: h.deps.usageQueue, logger: h.deps.logger, metrics: h.deps.metrics };
    try {
      const now = new Date();
      // A call 20 minutes ago: inside the first window (now − lag − interval … now − lag)…
      const early = call("bf-early", 0, new Date(now.getTime() - 20 * 60_000));
      // …and one 5 minutes ago, within the lag: not yet looked at.
      const recent = call("bf-recent", 1, new Date(now.getTime() - 5 * 60_000));
      await litellm.insert([early, recent].map((payload) => spendLogRowOf(payload, new Date(Number(payload.startTime) * 1000))));
      const first = await runGatewayBackfill(deps, settings(), now);
      expect(first).toMatchObject({ ran: true, report: { applied: 1 } });
      await h.drainQueue();
      expect([...(await receipts(h, "bf-")).keys()]).toEqual(["bf-early"]);
      expect(h.alerts("inv_gateway_unbilled")).toEqual([expect.objectContaining({ count: 1 })]);

      // LiteLLM writes a row late, for a call 50 minutes old, inside windows already checked: the overlap sees it.
      const written = call("bf-written-late", 2, new Date(now.getTime() - 50 * 60_000));
      await litellm.insert([spendLogRowOf(written, new Date(Number(written.startTime) * 1000))]);
      const second = await runGatewayBackfill(deps, settings(), new Date(now.getTime() + 6 * 60_000));
      expect(second).toMatchObject({ ran: true, report: { applied: 2 } });
      await h.drainQueue();
      expect([...(await receipts(h, "bf-")).keys()].sort()).toEqual(["bf-early", "bf-recent", "bf-written-late"]);
      const metrics = (await h.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/^spend_ingest_gateway_backfilled_calls_total 3$/m);
      expect(metrics).toMatch(/^spend_ingest_gateway_watermark_lag_seconds 600$/m);
    } finally {
      await spendLog.end();
    }
  });

  it("runs on one worker at a time, and a worker that dies holding the lock loses it", async () => {
    const spendLog = createSpendLogPool(litellm.url);
    const deps = { pool: h.deps.database.pool, spendLog, queue: h.deps.usageQueue, logger: h.deps.logger, metrics: h.deps.metrics };
    const holder = new pg.Client({ connectionString: h.settings.databaseUrl });
    holder.on("error", () => {});
    try {
      await holder.connect();
      await holder.query("SELECT pg_advisory_lock($1)", [0x5e1d_ba6f]);
      expect(await runGatewayBackfill(deps, settings())).toEqual({ ran: false });
      // The holder's worker dies: PostgreSQL ends its session and frees the lock.
      const { rows } = await holder.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      await h.deps.database.pool.query("SELECT pg_terminate_backend($1, 5000)", [rows[0]!.pid]);
      expect(await runGatewayBackfill(deps, settings())).toMatchObject({ ran: true });
    } finally {
      await holder.end().catch(() => {});
      await spendLog.end();
    }
  });

  it("fails with a clear error and charges nothing when LiteLLM's database cannot be read, callbacks unaffected", async () => {
    const spendLog = createSpendLogPool(`${litellm.url}_missing`);
    const deps = { pool: h.deps.database.pool, spendLog, queue: h.deps.usageQueue, logger: h.deps.logger, metrics: h.deps.metrics };
    try {
      const before = (await receipts(h, "")).size;
      await expect(runGatewayBackfill(deps, settings())).rejects.toThrow(/does not exist/);
      await h.postCallback([call("bf-callback-still-works", 3, new Date())]);
      await h.drainQueue();
      expect((await receipts(h, "")).size).toBe(before + 1);
    } finally {
      await spendLog.end();
    }
  });

  it("a second apply of the same missing calls while they wait in the queue adds nothing", async () => {
    const spendLog = createSpendLogPool(litellm.url);
    try {
      const now = new Date(Date.now() + 9 * HOUR);
      const payload = call("bf-twice", 4, new Date(now.getTime() - HOUR));
      await litellm.insert([spendLogRowOf(payload, new Date(Number(payload.startTime) * 1000))]);
      const options = {
        spendLog,
        pool: h.deps.database.pool,
        priceBook: loadPriceBook(h.settings.pricingFile),
        billingAccountFrom: h.settings.billingAccountFrom,
        since: new Date(now.getTime() - 2 * HOUR),
        until: now,
        apply: (missing: Parameters<typeof enqueueCallbackItems>[1]) => enqueueCallbackItems(h.deps.usageQueue, missing),
      };
      // Two runs at once, as two jobs of their own (distinct run ids): the receipt's key decides.
      await Promise.all(
        ["run-a", "run-b"].map((runId) =>
          reconcileGateway({ ...options, apply: (missing) => enqueueCallbackItems(h.deps.usageQueue, missing, { runId }) }),
        ),
      );
      await h.drainQueue();
      expect([...(await receipts(h, "bf-twice")).keys()]).toEqual(["bf-twice"]);
    } finally {
      await spendLog.end();
    }
  });
});

describe("a worker whose LiteLLM database cannot be read", () => {
  const broken = useServiceHarness({ LITELLM_DATABASE_URL: "postgres://postgres@127.0.0.1:5432/litellm_never_created", GATEWAY_RECONCILE_INTERVAL: "200ms" });

  it("logs a clear error and counts it on every run, and goes on billing callbacks", async () => {
    await waitFor(() => broken.logs.filter((line) => line.msg?.startsWith("gateway backfill failed")).length >= 2, 10_000);
    const metrics = (await broken.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(Number(/^spend_ingest_gateway_reconcile_failures_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    await broken.postCallback([call("bf-broken-callback", 5, new Date())]);
    await broken.drainQueue();
    expect((await receipts(broken, "bf-broken-callback")).size).toBe(1);
  });
});

