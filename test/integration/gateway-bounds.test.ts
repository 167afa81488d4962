import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { reconcileGateway } from "../../src/gateway/reconcile-spend-log.js";
import { MAX_FIELD_BYTES, PAGE_BYTES, PAGE_STORED_BYTES, readSpendLogPage, type SpendLogCursor } from "../../src/litellm/spend-log-page.js";
import { createSpendLogPool, readGatewaySchema } from "../../src/litellm/spend-log.js";
import { replayableEvent } from "../../src/ops/replay-quarantine.js";
import { enqueueCallbackItems } from "../../src/platform/queue-producer.js";
import { loadPriceBook } from "../../src/pricing/price-book.js";
import { useServiceHarness } from "../support/harness.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { spendLogRowOf, useLitellmDatabase } from "../support/litellm-spend-log.js";
import { startServiceProcess } from "../support/service-process.js";
import { TcpProxy } from "../support/tcp-proxy.js";
import { ADMIN_TOKEN, INGEST_TOKEN, TEST_REDIS_URL } from "../support/test-env.js";
import { waitFor } from "../support/wait.js";

// The backfill tried as a hostile caller would: rows of any size, times past the millisecond, ids
// in another Unicode form, and a LiteLLM database that stops answering while a worker shuts down.
const litellm = useLitellmDatabase();
const microseconds = useLitellmDatabase();
const stuck = useLitellmDatabase();
const h = useServiceHarness();

const CAPTURED_DIR = fileURLToPath(new URL("../fixtures/litellm/captured/", import.meta.url));
const CAPTURED = readdirSync(CAPTURED_DIR).map((file) => JSON.parse(readFileSync(join(CAPTURED_DIR, file), "utf8")) as Record<string, unknown>);
const HOUR = 3_600_000;
const MIB = 1024 * 1024;

/** A call of one of LiteLLM's captured kinds, paid by a team. */
function call(id: string, index: number, time: Date): Record<string, unknown> {
  const kind = CAPTURED[index % CAPTURED.length]!;
  const metadata = { ...(kind.metadata as Record<string, unknown>), user_api_key_team_id: `team-bounds-${index % 5}` };
  return { ...kind, id, metadata, startTime: time.getTime() / 1000, endTime: time.getTime() / 1000 + 0.5 };
}

const rowOf = (payload: Record<string, unknown>) => spendLogRowOf(payload, new Date(Number(payload.startTime) * 1000));

function reconcileOptions(spendLog: pg.Pool, since: Date, until: Date) {
  return {
    spendLog,
    pool: h.deps.database.pool,
    priceBook: loadPriceBook(h.settings.pricingFile),
    billingAccountFrom: h.settings.billingAccountFrom,
    since,
    until,
    apply: (missing: Parameters<typeof enqueueCallbackItems>[1]) => enqueueCallbackItems(h.deps.usageQueue, missing),
  };
}

async function receiptKeys(prefix: string): Promise<string[]> {
  const { rows } = await h.deps.database.pool.query<{ idempotency_key: string }>(
    "SELECT idempotency_key FROM charge_receipts WHERE idempotency_key LIKE $1 ORDER BY idempotency_key",
    [`${prefix}%`],
  );
  return rows.map((row) => row.idempotency_key);
}

describe("a spend log whose rows a caller made huge", () => {
  it("reads 48 MiB of caller metadata as a few kB a row, holds the row whose usage object is huge, and bills the rest", async () => {
    const now = new Date(Date.now() + 50 * HOUR);
    const at = (minutes: number) => new Date(now.getTime() - minutes * 60_000);
    const calls = Array.from({ length: 12 }, (_, index) => call(`huge-meta-${index}`, index, at(30 - index)));
    const heldCall = call("huge-usage", 0, at(10));
    await litellm.insert([...calls, heldCall].map(rowOf));
    // 4 MiB each of spend_logs_metadata, which a caller sets and billing never reads…
    await litellm.pool.query(
      `UPDATE "LiteLLM_SpendLogs" SET metadata = jsonb_set(metadata, '{spend_logs_metadata}', jsonb_build_object('notes', repeat('x', $1::int)))
       WHERE request_id LIKE 'huge-meta-%'`,
      [4 * MIB],
    );
    // …and a usage object, which billing does read, of 1 MiB.
    await litellm.pool.query(
      `UPDATE "LiteLLM_SpendLogs" SET metadata = jsonb_set(metadata, '{usage_object}', jsonb_build_object('prompt_tokens', 10, 'padding', repeat('y', $1::int)))
       WHERE request_id = 'huge-usage'`,
      [MIB],
    );
    const port = Number(new URL(litellm.url).port || 5432);
    const proxy = await TcpProxy.start({ host: "127.0.0.1", port });
    const proxied = new URL(litellm.url);
    proxied.port = String(proxy.port);
    const spendLog = createSpendLogPool(proxied.toString());
    try {
      const report = await reconcileGateway(reconcileOptions(spendLog, at(60), now));
      expect(report.total).toMatchObject({ litellmCalls: 13, missing: 13, missingUnpriced: 1 });
      // What LiteLLM's database sent for 13 rows holding 49 MiB: well under one of them.
      expect(proxy.bytesFromTarget).toBeLessThan(MIB / 4);
      await h.drainQueue();
      expect(await receiptKeys("huge-")).toEqual(calls.map((payload) => String(payload.id)).sort());
      const { rows } = await h.deps.database.pool.query<{ reason: string; detail: unknown; item: unknown; stage: "receiver" | "worker" }>(
        "SELECT reason, detail, item, stage FROM quarantine WHERE idempotency_key = 'huge-usage'",
      );
      expect(rows).toEqual([
        expect.objectContaining({ reason: "spend_log_field_too_large", detail: { issues: [{ path: "metadata.usage_object", message: expect.stringMatching(/^\d+ bytes, over the 65536/) }] } }),
      ]);
      // Replay refuses it: billed without its usage detail, the call could be billed wrong.
      expect(replayableEvent(rows[0]!, { billingAccountFrom: h.settings.billingAccountFrom })).toMatchObject({ ok: false, reason: "not_kept" });

      const again = await reconcileGateway({ ...reconcileOptions(spendLog, at(60), now), apply: undefined });
      expect(again.total).toMatchObject({ litellmCalls: 13, billed: 12, quarantined: 1, missing: 0 });
    } finally {
      await spendLog.end();
      await proxy.cut();
    }
  }, 60_000);

  it("reads a caller's ids of 100 kB as the over-long ids they are: the call is billed to its team, as its callback would be", async () => {
    const now = new Date(Date.now() + 55 * HOUR);
    const payload = call("huge-claim", 2, new Date(now.getTime() - 30 * 60_000));
    await litellm.insert([rowOf(payload)]);
    await litellm.pool.query(
      `UPDATE "LiteLLM_SpendLogs" SET end_user = repeat('u', 100000),
         metadata = jsonb_set(metadata, '{spend_logs_metadata}', jsonb_build_object('billing_account_id', repeat('a', 100000)))
       WHERE request_id = 'huge-claim'`,
    );
    const spendLog = createSpendLogPool(litellm.url);
    try {
      const report = await reconcileGateway(reconcileOptions(spendLog, new Date(now.getTime() - HOUR), now));
      expect(report.total).toMatchObject({ missing: 1, missingUnpriced: 0 });
      await h.drainQueue();
      const { rows } = await h.deps.database.pool.query("SELECT billing_account_id FROM charge_receipts WHERE idempotency_key = 'huge-claim'");
      expect(rows).toEqual([{ billing_account_id: "team-bounds-2" }]);
    } finally {
      await spendLog.end();
    }
  });

  it("stops a page at its byte budget and reads every row once, whatever the budget", async () => {
    const now = new Date(Date.now() + 60 * HOUR);
    const at = (seconds: number) => new Date(now.getTime() - seconds * 1000);
    const ids = Array.from({ length: 30 }, (_, index) => `paged-${String(index).padStart(2, "0")}`);
    await litellm.insert(ids.map((id, index) => rowOf(call(id, index, at(100 - index)))));
    // Usage objects of 20 kB each: under the field's bound, so read, but 30 of them pass 64 kB.
    await litellm.pool.query(
      `UPDATE "LiteLLM_SpendLogs" SET metadata = jsonb_set(metadata, '{usage_object,padding}', to_jsonb(repeat('z', 20000))) WHERE request_id LIKE 'paged-%'`,
    );
    const spendLog = createSpendLogPool(litellm.url);
    try {
      const schema = await readGatewaySchema(spendLog);
      const read: string[] = [];
      let cursor: SpendLogCursor = null;
      for (let pages = 0; pages < 100; pages += 1) {
        const rows = await readSpendLogPage(spendLog, schema, { since: at(200), until: now }, cursor, { rows: 1000, bytes: 64 * 1024, storedBytes: PAGE_STORED_BYTES }, true);
        if (rows.length === 0) break;
        // The row that passes the budget ends the page: four rows of 20 kB at most.
        expect(rows.length).toBeLessThanOrEqual(4);
        read.push(...rows.map((row) => row.request_id));
        cursor = { startKey: rows.at(-1)!.start_key, requestId: rows.at(-1)!.request_id };
      }
      expect(read).toEqual(ids);
      expect(MAX_FIELD_BYTES).toBeGreaterThan(20_000);
    } finally {
      await spendLog.end();
    }
  });
  it("stops a page at what its rows hold as stored, before the database unpacks their caller-set metadata", async () => {
    const now = new Date(Date.now() + 80 * HOUR);
    const at = (seconds: number) => new Date(now.getTime() - seconds * 1000);
    const ids = Array.from({ length: 20 }, (_, index) => `stored-${String(index).padStart(2, "0")}`);
    await litellm.insert(ids.map((id, index) => rowOf(call(id, index, at(100 - index)))));
    // 192 kB of hex per row in metadata billing never reads (spend_logs_metadata): it compresses
    // only about 2:1, so each row holds about 100 kB as stored.
    await litellm.pool.query(
      `UPDATE "LiteLLM_SpendLogs" SET metadata = jsonb_set(metadata, '{spend_logs_metadata,padding}',
         to_jsonb((SELECT string_agg(md5(request_id || i::text), '') FROM generate_series(1, 6000) i))) WHERE request_id LIKE 'stored-%'`,
    );
    const { rows: sizes } = await litellm.pool.query<{ stored: number }>(`SELECT min(pg_column_size(metadata)) AS stored FROM "LiteLLM_SpendLogs" WHERE request_id LIKE 'stored-%'`);
    expect(sizes[0]!.stored).toBeGreaterThan(64 * 1024);
    const spendLog = createSpendLogPool(litellm.url);
    try {
      const schema = await readGatewaySchema(spendLog);
      const read: string[] = [];
      let cursor: SpendLogCursor = null;
      for (let pages = 0; pages < 100; pages += 1) {
        const rows = await readSpendLogPage(spendLog, schema, { since: at(200), until: now }, cursor, { rows: 1000, bytes: PAGE_BYTES, storedBytes: 256 * 1024 }, true);
        if (rows.length === 0) break;
        // The row that passes 256 kB as stored ends the page: four rows of over 64 kB at most.
        expect(rows.length).toBeLessThanOrEqual(4);
        read.push(...rows.map((row) => row.request_id));
        cursor = { startKey: rows.at(-1)!.start_key, requestId: rows.at(-1)!.request_id };
      }
      expect(read).toEqual(ids);
    } finally {
      await spendLog.end();
    }
  });
});

describe("a spend log whose times have microseconds", () => {
  it("reads a table of 2,500 rows within one millisecond exactly 2,500 times, across pages", async () => {
    // LiteLLM's Prisma schema says timestamp(3); a database migrated by hand may keep microseconds.
    await microseconds.pool.query(`ALTER TABLE "LiteLLM_SpendLogs" ALTER COLUMN "startTime" TYPE timestamp(6)`);
    const base = new Date(Date.now() - 2 * HOUR);
    base.setUTCMilliseconds(0);
    const ids = Array.from({ length: 2_500 }, (_, index) => `us-${String(index).padStart(4, "0")}`);
    await microseconds.insert(ids.map((id, index) => ({ ...rowOf(call(id, index, base)), status: "failure" as const })));
    // Ids and microseconds in opposite orders, several rows on each microsecond.
    await microseconds.pool.query(
      `UPDATE "LiteLLM_SpendLogs" SET "startTime" = "startTime" + ((2499 - substring(request_id from 4)::int) % 997) * interval '1 microsecond'`,
    );
    const spendLog = createSpendLogPool(microseconds.url);
    try {
      let read = 0;
      const report = await reconcileGateway({
        ...reconcileOptions(spendLog, new Date(base.getTime() - HOUR), new Date(base.getTime() + HOUR)),
        apply: undefined,
        countReceiptsWithoutRow: false,
        onProgress: (total) => {
          read = total.litellmCalls + total.skipped;
          // A cursor that repeats would read on for ever: stop it at the first row read twice.
          if (read > ids.length) throw new Error(`${read} rows read from a table of ${ids.length}`);
        },
      });
      expect(report.total).toMatchObject({ skipped: 2_500, litellmCalls: 0 });
      expect(read).toBe(2_500);
    } finally {
      await spendLog.end();
    }
  });
});

describe("a spend-log id LiteLLM wrote in NFD", () => {
  it("is found billed under the NFC key its callback was charged under, and never sent again", async () => {
    const now = new Date(Date.now() + 70 * HOUR);
    const nfd = "nfd-cafe\u0301-réponse".normalize("NFD");
    expect(nfd).not.toBe(nfd.normalize("NFC"));
    const payload = call(nfd, 1, new Date(now.getTime() - 30 * 60_000));
    await litellm.insert([rowOf(payload)]);
    expect((await h.postCallback([payload])).statusCode).toBe(202);
    await h.drainQueue();
    expect(await receiptKeys("nfd-")).toEqual([nfd.normalize("NFC")]);

    const spendLog = createSpendLogPool(litellm.url);
    try {
      const report = await reconcileGateway(reconcileOptions(spendLog, new Date(now.getTime() - HOUR), now));
      expect(report.total).toMatchObject({ litellmCalls: 1, billed: 1, missing: 0 });
      expect(report).toMatchObject({ applied: 0, receiptsWithoutRow: 0 });
    } finally {
      await spendLog.end();
    }
  });
});

describe("a worker whose backfill waits on LiteLLM's database", () => {
  const prefix = useQueuePrefix();

  it("exits 0 on SIGTERM, its wait cut, without counting a failure", async () => {
    // LiteLLM's database stops answering the backfill: its spend log locked by another session.
    const locker = new pg.Client({ connectionString: stuck.url });
    locker.on("error", () => {});
    await locker.connect();
    await locker.query(`BEGIN; LOCK TABLE "LiteLLM_SpendLogs" IN ACCESS EXCLUSIVE MODE`);
    const worker = startServiceProcess("usage-worker", {
      DATABASE_URL: h.settings.databaseUrl,
      REDIS_URL: TEST_REDIS_URL,
      INGEST_TOKENS: INGEST_TOKEN,
      ADMIN_TOKEN,
      METRICS_PORT: "0",
      QUEUE_PREFIX: prefix,
      LITELLM_DATABASE_URL: stuck.url,
      GATEWAY_RECONCILE_INTERVAL: "200ms",
      // Longer than this wait would take to end by itself (LiteLLM's statement timeout, 30 s) is not needed.
      SHUTDOWN_TIMEOUT_MS: "20000",
    });
    try {
      await waitFor(async () => {
        // Another session: the locker's transaction sees one snapshot of pg_stat_activity.
        const { rows } = await stuck.pool.query<{ waiting: number }>(
          `SELECT count(*)::int AS waiting FROM pg_stat_activity
           WHERE application_name = 'spend-ingest gateway reconcile' AND wait_event_type = 'Lock'`,
        );
        if (worker.child.exitCode !== null) throw new Error(worker.lines.join("\n"));
        return rows[0]!.waiting > 0;
      }, 20_000).catch((error: Error) => {
        throw new Error(`${error.message}\n${worker.lines.slice(-10).join("\n")}`);
      });
      const exited = once(worker.child, "exit");
      worker.child.kill("SIGTERM");
      const [code] = await exited;
      expect(code).toBe(0);
      expect(worker.lines.some((line) => line.includes("gateway backfill cut short by the shutdown"))).toBe(true);
      expect(worker.lines.filter((line) => line.includes("gateway backfill failed"))).toEqual([]);
    } finally {
      if (worker.child.exitCode === null) worker.child.kill("SIGKILL");
      await locker.query("ROLLBACK").catch(() => {});
      await locker.end();
    }
  }, 60_000);
});
