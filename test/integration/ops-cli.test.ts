import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { UnrecoverableError, Worker } from "bullmq";
import { Redis } from "ioredis";
import { recordGrant } from "../../src/ledger/grants.js";
import { createUsageQueue } from "../../src/queue/producer.js";
import { useTestDatabase, waitFor } from "../support/harness.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { usageEvent } from "../support/usage-events.js";
import { TEST_REDIS_URL } from "../support/test-env.js";

const db = useTestDatabase();

async function ops(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { PATH: process.env.PATH, DATABASE_URL: db.url, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: db.name };
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["dist/workers/ops.js", ...args], { env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("npm run ops", () => {
  it("reconcile says ok, then finds a balance tampered with in SQL and exits 1", async () => {
    await recordGrant(db.pool, { billingAccountId: "acct-ops", credits: 500n, reference: "ops-500", reason: null });
    expect(await ops("reconcile")).toMatchObject({ code: 0, stdout: "ok (1 accounts)\n" });
    await db.pool.query("UPDATE accounts SET balance_credits = balance_credits + 1 WHERE id = 'acct-ops'");
    const drift = await ops("reconcile", "--json");
    expect(drift.code).toBe(1);
    expect(JSON.parse(drift.stdout)).toMatchObject({
      ok: false,
      drifts: [{ kind: "balance_mismatch", billingAccountId: "acct-ops", balance: "501", ledgerSum: "500" }],
    });
    await db.pool.query("UPDATE accounts SET balance_credits = balance_credits - 1 WHERE id = 'acct-ops'");
  });

  it("grant credits once per reference", async () => {
    const first = await ops("grant", "acct-cli", "700", "cli-700", "--json");
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ outcome: "created", balance_credits: 700 });
    expect(JSON.parse((await ops("grant", "acct-cli", "700", "cli-700", "--json")).stdout)).toMatchObject({ outcome: "existing", balance_credits: 700 });
    expect((await ops("grant", "acct-cli", "701", "cli-700")).code).toBe(1);
    expect((await ops("grant", "acct-cli", "-5", "cli-neg")).code).toBe(2);
  });

  it("price explains a charge from the price book, term by term", async () => {
    const file = join(tmpdir(), `spend-ingest-price-${process.pid}.json`);
    writeFileSync(file, JSON.stringify([litellmPayload("price-1", "t"), { ...litellmPayload("price-2", "t"), model: "nobody/unknown", response_cost: null, model_map_information: null }]));
    const human = await ops("price", file);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain("uncached_prompt         10 × 0.0000025 (input_cost_per_token) = 0.000025");
    expect(human.stdout).toContain("→ 2250 credits");
    expect(human.stdout).toContain("not priced (unpriced_model)");
    const json = JSON.parse((await ops("price", file, "--json")).stdout);
    expect(json.items[0].outcome.charge).toMatchObject({ chargedCredits: "2250", providerCostUsd: "0.000225", priceEntry: "gpt-4o" });
    expect(json.items[1].outcome).toMatchObject({ priced: false, reason: "unpriced_model" });
  });

  it("replays the quarantine onto the queue, once", async () => {
    const event = usageEvent({ idempotencyKey: "cli-replay-1", billingAccountId: "acct-replay", model: "gpt-4o", promptTokens: 1 });
    await db.pool.query(
      "INSERT INTO quarantine (fingerprint, stage, reason, idempotency_key, item) VALUES ('cli-replay', 'worker', 'unpriced_model', $1, $2)",
      [event.idempotencyKey, JSON.stringify(event)],
    );
    const listed = await ops("quarantine", "list", "--reason", "unpriced_model");
    expect(listed.stdout).toMatch(/^id +quarantined at +stage +reason +idempotency key +state\n/);
    expect(listed.stdout).toMatch(/ +worker +unpriced_model +cli-replay-1 +pending\n$/);
    expect(JSON.parse((await ops("quarantine", "replay", "--json")).stdout)).toEqual({ replayed: 1, stillRefused: 0 });
    expect(JSON.parse((await ops("quarantine", "replay", "--json")).stdout)).toEqual({ replayed: 0, stillRefused: 0 });
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const queue = createUsageQueue(redis, db.name);
    try {
      const waiting = await queue.getJobs(["waiting"]);
      expect(waiting.map((job) => job.data.events.map((queued: { idempotencyKey: string }) => queued.idempotencyKey))).toEqual([["cli-replay-1"]]);
      await queue.obliterate({ force: true });
    } finally {
      await queue.close();
      await redis.quit();
    }
    await db.pool.query("DELETE FROM quarantine WHERE fingerprint = 'cli-replay'");
  });

  it("lists failed jobs with their reasons and retries them", async () => {
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const queue = createUsageQueue(redis, db.name);
    try {
      expect(await ops("failed")).toMatchObject({ code: 0, stdout: "no failed jobs\n" });
      await queue.add("charge-usage", { events: [] }, { jobId: "cli-failed" });
      const failing = new Worker(queue.name, async () => {
        throw new UnrecoverableError("database unreachable for an hour");
      }, { connection: redis, prefix: db.name });
      await waitFor(async () => (await queue.getJobState("cli-failed")) === "failed");
      await failing.close();
      const listed = await ops("failed");
      expect(listed.code).toBe(1);
      expect(listed.stdout).toMatch(/^id +name +attempts +failed at +reason\n/);
      expect(listed.stdout).toMatch(/cli-failed +charge-usage .* database unreachable for an hour\n$/);
      expect(JSON.parse((await ops("failed", "--json")).stdout)).toMatchObject([{ id: "cli-failed", reason: "database unreachable for an hour" }]);
      expect(JSON.parse((await ops("retry-failed", "--json")).stdout)).toEqual({ retried: 1 });
      expect(await queue.getJobState("cli-failed")).toBe("waiting");
      const queues = await ops("queues");
      expect(queues.stdout).toMatch(/usage-events +waiting +1\n/);
      await queue.obliterate({ force: true });
    } finally {
      await queue.close();
      await redis.quit();
    }
  });

  it("lists the quarantine and answers usage errors with exit 2", async () => {
    expect(await ops("quarantine", "list")).toMatchObject({ code: 0, stdout: "quarantine is empty\n" });
    expect(JSON.parse((await ops("quarantine", "list", "--json")).stdout)).toEqual([]);
    expect((await ops("quarantine", "shred")).code).toBe(2);
    expect((await ops("no-such-command")).code).toBe(2);
    expect((await ops()).code).toBe(2);
    expect(await ops("--help")).toMatchObject({ code: 0, stdout: expect.stringContaining("quarantine replay") });
    expect(await ops("reconcile", "--help")).toMatchObject({ code: 0, stdout: expect.stringContaining("usage: npm run ops -- reconcile") });
  });
});
