import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { UnrecoverableError, Worker } from "bullmq";
import { Redis } from "ioredis";
import { recordGrant } from "../../src/books/grants.js";
import { recordUsageBatch } from "../../src/books/record-usage.js";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";
import { createUsageQueue } from "../../src/platform/queue-producer.js";
import { useTestDatabase } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { runOps, runOpsWith } from "../support/ops-cli.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { pricedUsage, usageEvent } from "../support/usage-events.js";
import { TEST_REDIS_URL } from "../support/test-env.js";

const db = useTestDatabase();

const ops = (...args: string[]) => runOps(db, ...args);

const BUNDLED_MAP = fileURLToPath(new URL("../../config/litellm/model_prices_and_context_window.json", import.meta.url));
const BUNDLED_MAP_SHA256 = createHash("sha256").update(readFileSync(BUNDLED_MAP)).digest("hex");

describe("npm run ops", () => {
  it("reconcile says ok, then finds a balance tampered with in SQL and exits 1", async () => {
    await recordGrant(db.pool, { billingAccountId: "acct-ops", credits: 500n, reference: "ops-500", reason: null });
    expect(await ops("reconcile")).toMatchObject({ code: 0, stdout: "ok (1 accounts)\n" });
    await db.pool.query("UPDATE accounts SET balance_credits = balance_credits + 1 WHERE id = 'acct-ops'");
    const drift = await ops("reconcile", "--json");
    expect(drift.code).toBe(1);
    expect(JSON.parse(drift.stdout)).toMatchObject({
      ok: false,
      drifts: [
        { kind: "balance_mismatch", billingAccountId: "acct-ops", balance: "501", ledgerSum: "500" },
        // The live buckets hold the 500 the ledger says, not the balance.
        { kind: "live_credit_mismatch", billingAccountId: "acct-ops", balance: "501", liveCredits: "500" },
      ],
    });
    await db.pool.query("UPDATE accounts SET balance_credits = balance_credits - 1 WHERE id = 'acct-ops'");
    // A bucket's remaining credits edited by hand.
    await db.pool.query("UPDATE credit_buckets SET remaining_credits = 400 WHERE billing_account_id = 'acct-ops'");
    const bucket = await ops("reconcile", "--json");
    expect(bucket.code).toBe(1);
    expect(JSON.parse(bucket.stdout).drifts.map((found: { kind: string }) => found.kind)).toEqual(["live_credit_mismatch", "bucket_mismatch"]);
    await db.pool.query("UPDATE credit_buckets SET remaining_credits = 500 WHERE billing_account_id = 'acct-ops'");
  });

  it("--out writes the output to a new file, whole, and never replaces one", async () => {
    await recordGrant(db.pool, { billingAccountId: "acct-out", credits: 300n, reference: "out-300", reason: null });
    const folder = mkdtempSync(join(tmpdir(), "spend-ingest-out-"));
    const file = join(folder, "heads.json");
    expect(await ops("books", "head", "--json", "--out", file)).toMatchObject({ code: 0, stdout: "" });
    const written = readFileSync(file, "utf8");
    expect(JSON.parse(written).heads).toContainEqual(expect.objectContaining({ billing_account_id: "acct-out", seq: 1 }));
    // Nothing but the file is left in its folder: the temporary name is gone.
    expect(readdirSync(folder)).toEqual(["heads.json"]);
    expect(await ops("reconcile", "--against", file)).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ok \(\d+ accounts, \d+ heads of .* unchanged\)\n$/) });

    // Refused before the command runs: a grant is not recorded when its output has nowhere to go.
    const again = await ops("grant", "acct-out", "5", "out-5", "--out", file);
    expect(again).toMatchObject({ code: 2, stderr: expect.stringContaining(`--out: ${file} already exists`) });
    expect(readFileSync(file, "utf8")).toBe(written);
    expect((await db.pool.query("SELECT 1 FROM grants WHERE reference = 'out-5'")).rowCount).toBe(0);
    expect(await ops("queues", "--out", join(folder, "no-such-folder", "queues.txt"))).toMatchObject({ code: 2, stderr: expect.stringContaining("does not exist") });
    rmSync(folder, { recursive: true });
  });

  it("each command reads only the settings it uses, and names every one it lacks in one try (exit 2)", async () => {
    const database = { DATABASE_URL: db.url };
    const reconciled = await runOpsWith(database, "reconcile", "--json");
    expect({ code: reconciled.code, ok: JSON.parse(reconciled.stdout).ok, stderr: reconciled.stderr }).toEqual({ code: 0, ok: true, stderr: "" });
    expect(await runOpsWith(database, "books", "head", "--json")).toMatchObject({ code: 0, stderr: "" });
    expect(await runOpsWith({ REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: db.name }, "queues")).toMatchObject({ code: 0, stderr: "" });
    expect(await runOpsWith({ DATABASE_URL: "", ENFORCE_BELOW: "1.5" }, "grant", "acct-settings", "1", "settings-1")).toEqual({
      code: 2,
      stdout: "",
      stderr: ["spend-ingest: invalid setting DATABASE_URL: is required", "spend-ingest: invalid setting ENFORCE_BELOW: a whole number of credits", ""].join("\n"),
    });
    expect(await runOpsWith({ ...database, LITELLM_DATABASE_URL: "" }, "gateway", "reconcile", "--since", "2026-11-01")).toEqual({
      code: 2,
      stdout: "",
      stderr: [
        "spend-ingest: invalid setting REDIS_URL: is required (or REDIS_CLUSTER_NODES for a Redis Cluster)",
        "spend-ingest: invalid setting LITELLM_DATABASE_URL: is required",
        "",
      ].join("\n"),
    });
  });

  it("grant credits once per reference", async () => {
    const first = await ops("grant", "acct-cli", "700", "cli-700", "--json");
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ outcome: "created", balance_credits: 700 });
    expect(JSON.parse((await ops("grant", "acct-cli", "700", "cli-700", "--json")).stdout)).toMatchObject({ outcome: "existing", balance_credits: 700 });
    expect((await ops("grant", "acct-cli", "701", "cli-700")).code).toBe(1);
    expect((await ops("grant", "acct-cli", "-5", "cli-neg")).code).toBe(2);
  });

  it("grant --expires-at and --priority give the grant's bucket its terms, checked as the API checks them", async () => {
    const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const granted = await ops("grant", "acct-cli-terms", "300", "cli-terms", "--expires-at", expiresAt, "--priority", "10", "--json");
    expect(granted.code).toBe(0);
    expect(JSON.parse(granted.stdout)).toMatchObject({ outcome: "created", expires_at: expiresAt, priority: 10, balance_credits: 300 });
    const { rows } = await db.pool.query("SELECT priority, expires_at FROM credit_buckets WHERE billing_account_id = 'acct-cli-terms'");
    expect(rows).toEqual([{ priority: 10, expires_at: new Date(expiresAt) }]);
    const past = await ops("grant", "acct-cli-terms", "300", "cli-terms-past", "--expires-at", "2020-01-01T00:00:00Z");
    expect(past.code).toBe(2);
    expect(past.stderr).toMatch(/--expires-at must be in the future/);
    expect((await ops("grant", "acct-cli-terms", "300", "cli-terms-bad", "--expires-at", "next week")).code).toBe(2);
    expect((await ops("grant", "acct-cli-terms", "300", "cli-terms-bad", "--priority", "101")).code).toBe(2);
  });

  it("debit charges once per reference, never refused for lack of credit; exit 2 without --reason", async () => {
    const first = await ops("debit", "acct-cli-debit", "250", "cli-seat-fee", "--reason", "seat fee", "--json");
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ outcome: "created", credits: 250, balance_credits: -250 });
    expect(JSON.parse((await ops("debit", "acct-cli-debit", "250", "cli-seat-fee", "--reason", "seat fee", "--json")).stdout)).toMatchObject({
      outcome: "existing",
      balance_credits: -250,
    });
    expect((await ops("debit", "acct-cli-debit", "251", "cli-seat-fee", "--reason", "seat fee")).code).toBe(1);
    expect((await ops("debit", "acct-cli-debit", "250", "cli-no-reason")).code).toBe(2);
    expect((await ops("debit", "acct-cli-debit", "250", "cli-blank-reason", "--reason", " ")).code).toBe(2);
    expect((await ops("debit", "acct-cli-debit", "0", "cli-zero", "--reason", "x")).code).toBe(2);
    expect((await ops("debit", "--help")).stdout).toMatch(/Never refused for lack of credit/);
  });

  it("transfer moves credits once per reference, refuses more than is available without --allow-overdraft (exit 1)", async () => {
    await recordGrant(db.pool, { billingAccountId: "acct-cli-org", credits: 500n, reference: "cli-org-grant", reason: null });
    const moved = await ops("transfer", "acct-cli-org", "acct-cli-team", "200", "cli-fund-team", "--expiration", "none", "--json");
    expect(moved.code).toBe(0);
    expect(JSON.parse(moved.stdout)).toMatchObject({ outcome: "created", from_balance_credits: 300, to_balance_credits: 200 });
    expect((await ops("transfer", "acct-cli-org", "acct-cli-team", "200", "cli-fund-team", "--expiration", "none")).code).toBe(0);
    expect((await ops("transfer", "acct-cli-org", "acct-cli-team", "201", "cli-fund-team", "--expiration", "none")).code).toBe(1);
    const short = await ops("transfer", "acct-cli-org", "acct-cli-team", "301", "cli-short", "--json");
    expect(short.code).toBe(1);
    expect(JSON.parse(short.stdout)).toMatchObject({ outcome: "insufficient_credits", available_credits: 300 });
    const over = await ops("transfer", "acct-cli-org", "acct-cli-team", "301", "cli-over", "--allow-overdraft", "--json");
    expect(JSON.parse(over.stdout)).toMatchObject({ outcome: "created", from_balance_credits: -1, to_balance_credits: 501 });
    // Checked as the API checks them.
    expect((await ops("transfer", "acct-cli-org", "acct-cli-org", "1", "cli-self")).code).toBe(2);
    expect((await ops("transfer", "acct-cli-org", "acct-cli-team", "1", "cli-fixed", "--expiration", "fixed")).code).toBe(2);
    expect((await ops("transfer", "acct-cli-org", "acct-cli-team", "1", "cli-when", "--expires-at", "2030-01-01T00:00:00Z")).code).toBe(2);
    expect((await ops("transfer", "acct-cli-org", "acct-cli-team", "1", "cli-how", "--expiration", "sometimes")).code).toBe(2);
    expect((await ops("transfer", "--help")).stdout).toMatch(/--allow-overdraft/);
    expect(await ops("reconcile")).toMatchObject({ code: 0 });
  });

  it("reverse gives a charge back once per reference, never past the charge (exit 1)", async () => {
    await recordGrant(db.pool, { billingAccountId: "acct-cli-rev", credits: 1000n, reference: "cli-rev-grant", reason: null });
    await recordUsageBatch(db.pool, {
      charges: [pricedUsage("cli-rev-call", "acct-cli-rev", 300)],
      quarantines: [],
      priceBookHash: "test",
      lowBalanceThresholds: [],
      enforcement: ENFORCEMENT_OFF,
    });
    const partial = await ops("reverse", "cli-rev-call", "cli-rev-1", "--reason", "outage", "--credits", "100", "--json");
    expect(partial.code).toBe(0);
    expect(JSON.parse(partial.stdout)).toMatchObject({ outcome: "created", reversed_credits: 100, balance_credits: 800 });
    expect(JSON.parse((await ops("reverse", "cli-rev-call", "cli-rev-1", "--reason", "outage", "--credits", "100", "--json")).stdout)).toMatchObject({
      outcome: "existing",
      balance_credits: 800,
    });
    const whole = await ops("reverse", "cli-rev-call", "cli-rev-whole", "--reason", "outage", "--json");
    expect(whole.code).toBe(1);
    expect(JSON.parse(whole.stdout)).toMatchObject({ outcome: "exceeds_charge", charged_credits: 300, reversed_credits: 100 });
    expect((await ops("reverse", "cli-rev-call", "cli-rev-2", "--reason", "outage", "--credits", "200")).code).toBe(0);
    expect((await ops("reverse", "cli-no-such-call", "cli-rev-3", "--reason", "outage")).code).toBe(1);
    expect((await ops("reverse", "cli-rev-call", "cli-rev-4")).code).toBe(2);
    expect((await ops("reverse", "cli-rev-call", "cli-rev-4", "--reason", "x", "--credits", "-1")).code).toBe(2);
    expect(await ops("reconcile")).toMatchObject({ code: 0 });
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
    expect(human.stdout).toContain("(a) price book, names tried: gpt-4o, openai/gpt-4o");
    expect(human.stdout).toContain("answered by step gateway: entry model_map_value");
    expect(human.stdout).toContain("LiteLLM reported $0.000225, no divergence");
    expect(json.items[0].outcome.charge).toMatchObject({ chargedCredits: "2250", providerCostUsd: "0.000225", rateStep: "gateway", priceEntry: "model_map_value" });
    expect(json.items[1].outcome).toMatchObject({ priced: false, reason: "unpriced_model" });
    // First, which cost map step (c) reads: what the book states of it, and what the file is.
    const costMap = { version: "LiteLLM 1.81.13 (69ee2c21)", date: "2026-02-16", entries: 2566, sha256: BUNDLED_MAP_SHA256 };
    expect(json.cost_map).toEqual({ ...costMap, path: BUNDLED_MAP });
    expect(human.stdout.split("\n").slice(0, 2)).toEqual([
      `cost map: LiteLLM 1.81.13 (69ee2c21), 2026-02-16; 2566 entries, sha256 ${BUNDLED_MAP_SHA256}`,
      `  ${BUNDLED_MAP}`,
    ]);
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
    // No worker reads the queue: nothing is sent, and the item stays pending.
    expect(await ops("quarantine", "replay", "--wait", "0", "--json")).toMatchObject({ code: 1, stdout: "", stderr: expect.stringContaining("no worker reads the queue") });
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const queue = createUsageQueue(redis, db.name);
    // A worker on the queue that takes nothing (autorun off): the job stays queued, and the count says so.
    const idle = new Worker(queue.name, null, { connection: redis, prefix: db.name, autorun: false });
    try {
      await idle.waitUntilReady();
      const sent = await ops("quarantine", "replay", "--wait", "0", "--json");
      expect(sent.code).toBe(1);
      expect(JSON.parse(sent.stdout)).toMatchObject({ replayed: 1, stillPending: 1, charged: 0, refusedBeforeSending: 0 });
      expect(JSON.parse((await ops("quarantine", "replay", "--wait", "0", "--json")).stdout)).toMatchObject({ replayed: 0, stillPending: 0 });
      const waiting = await queue.getJobs(["waiting"]);
      expect(waiting.map((job) => job.data.events.map((queued: { idempotencyKey: string }) => queued.idempotencyKey))).toEqual([["cli-replay-1"]]);
    } finally {
      await idle.close();
      await queue.obliterate({ force: true });
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

  describe("terminal-safe output", () => {
    // A clear screen and a fake green line, an OSC title, a C1 CSI and a right-to-left override.
    const HOSTILE = "\x1b[2J\x1b[32mreconcile: ok\x1b[0m \x1b]0;pwned\x07 \u009b31m \u202e";
    const SHOWN = String.raw`\x1b[2J\x1b[32mreconcile: ok\x1b[0m \x1b]0;pwned\x07 \x9b31m \u{202e}`;
    // What a terminal acts on or reorders by; our own line breaks are the one control allowed.
    const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

    it("quarantine list shows hostile keys and reasons escaped, in human output and --json", async () => {
      const event = usageEvent({ idempotencyKey: `k${HOSTILE}`, billingAccountId: `acct${HOSTILE}`, model: `m${HOSTILE}` });
      await db.pool.query(
        "INSERT INTO quarantine (fingerprint, stage, reason, idempotency_key, item) VALUES ('cli-hostile', 'worker', $1, $2, $3)",
        [`r${HOSTILE}`, event.idempotencyKey, JSON.stringify(event)],
      );
      try {
        const human = await ops("quarantine", "list");
        expect(human.code).toBe(0);
        expect(human.stdout).not.toMatch(RAW_CONTROL);
        expect(human.stdout).toContain(` r${SHOWN} `);
        expect(human.stdout).toContain(String.raw` k\x1b[2J\x1b[32mreconcile: ok\x1b[0m`);
        expect(human.stdout.split("\n")).toHaveLength(3); // header, one row, the final newline

        const json = await ops("quarantine", "list", "--json");
        expect(json.stdout).not.toMatch(RAW_CONTROL);
        expect(json.stdout).toContain(String.raw`\u001b]0;pwned\u0007 \u009b31m \u202e`);
        const [row] = JSON.parse(json.stdout);
        expect(row).toMatchObject({ reason: `r${HOSTILE}`, idempotencyKey: event.idempotencyKey, item: event });
      } finally {
        await db.pool.query("DELETE FROM quarantine WHERE fingerprint = 'cli-hostile'");
      }
    });

    it("usage errors quote a hostile argument escaped", async () => {
      const refused = await ops("grant", `acct${HOSTILE}`, "5", "ref-hostile");
      expect(refused.code).toBe(2);
      expect(refused.stderr).not.toMatch(RAW_CONTROL);
      expect((await ops(`no-such-${HOSTILE}`)).stderr).toContain(`unknown command 'no-such-${SHOWN}'\n`);
    });
  });

  describe("account ids and references on the command line", () => {
    const firstLine = (text: string) => text.split("\n")[0];

    it.each([
      ["a control character", "acct\x1b[31m", "holds a control character"],
      ["a tab", "acct\tx", "holds a control character"],
      ["a C1 control", "acct\u009b", "holds a control character"],
      ["blank text", "   ", "is empty or blank"],
      ["513 characters", "a".repeat(513), "is longer than 512 characters"],
      // The command line carries UTF-8: Node hands a lone surrogate over as U+FFFD.
      ["a lone surrogate", "acct-\ud800", "holds U+FFFD"],
    ])("grant refuses %s in the account or the reference with exit 2, naming it", async (_case, bad, reason) => {
      const inAccount = await ops("grant", bad, "5", "ref-bad");
      expect(inAccount.code).toBe(2);
      expect(firstLine(inAccount.stderr)).toMatch(new RegExp(`^grant: account ${reason.replace("+", "\\+")}`));
      const inReference = await ops("grant", "acct-bad", "5", bad);
      expect(inReference.code).toBe(2);
      expect(firstLine(inReference.stderr)).toMatch(new RegExp(`^grant: reference ${reason.replace("+", "\\+")}`));
      const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM grants WHERE reference = 'ref-bad' OR billing_account_id = 'acct-bad'");
      expect(rows[0].n).toBe(0);
    });

    it("a NUL cannot reach the command: the operating system's argv ends at it", async () => {
      const refused = await ops("grant", "acct\u0000x", "5", "ref-nul");
      expect(refused.code).toBe("ERR_INVALID_ARG_VALUE");
    });

    it("an account and a reference typed in NFD are the NFC ones: one account, one grant", async () => {
      const nfd = "cafe\u0301-acct";
      const nfc = nfd.normalize("NFC");
      const first = await ops("grant", nfd, "100", "ref-cafe\u0301", "--json");
      expect(first.code).toBe(0);
      expect(JSON.parse(first.stdout)).toMatchObject({ outcome: "created", billing_account_id: nfc, reference: "ref-caf\u00e9" });
      const again = await ops("grant", nfc, "100", "ref-caf\u00e9", "--json");
      expect(JSON.parse(again.stdout)).toMatchObject({ outcome: "existing", billing_account_id: nfc, balance_credits: 100 });
      expect(JSON.parse((await ops("grant", nfd, "50", "ref-cafe-2", "--json")).stdout)).toMatchObject({ balance_credits: 150 });
      const { rows } = await db.pool.query("SELECT id FROM accounts WHERE id LIKE 'caf%'");
      expect(rows).toEqual([{ id: nfc }]);
    });

    it("grant credits up to Number.MAX_SAFE_INTEGER, and refuses a grant that would take the balance past it (exit 1)", async () => {
      for (const credits of ["99999999999999999999", "9007199254740992", "0", "1e3", "07"]) {
        const refused = await ops("grant", "acct-big", credits, `ref-${credits}`);
        expect(refused.code, credits).toBe(2);
        expect(firstLine(refused.stderr), credits).toBe("grant: credits must be a whole number from 1 to 9007199254740991");
      }
      const most = await ops("grant", "acct-big", "9007199254740991", "ref-most", "--json");
      expect(JSON.parse(most.stdout)).toMatchObject({ credits: 9007199254740991, balance_credits: 9007199254740991 });
      const beyond = await ops("grant", "acct-big", "1", "ref-one-more", "--json");
      expect(beyond.code).toBe(1);
      expect(JSON.parse(beyond.stdout)).toEqual({ outcome: "out_of_range", billing_account_id: "acct-big", balance_credits: 9007199254740991 });
      expect((await ops("grant", "acct-big", "1", "ref-one-more")).stdout).toBe(
        "refused: the balance of acct-big (9007199254740991) would pass 9007199254740991 credits; nothing was granted\n",
      );
    });

    it("quarantine assign takes an id that fits a bigint and a canonical account", async () => {
      for (const id of ["1e20", "99999999999999999999", "9223372036854775808", "0", "-1", "x"]) {
        const refused = await ops("quarantine", "assign", id, "acct-x");
        expect(refused.code, id).toBe(2);
      }
      expect(firstLine((await ops("quarantine", "assign", "1e20", "acct-x")).stderr)).toBe(
        "quarantine assign: id must be a whole number from 1 to 9223372036854775807",
      );
      expect((await ops("quarantine", "assign", "9223372036854775807", "acct-x")).code).toBe(1); // well-formed, no such item
      const badAccount = await ops("quarantine", "assign", "1", "acct\x1b");
      expect(badAccount.code).toBe(2);
      expect(firstLine(badAccount.stderr)).toBe("quarantine assign: account holds a control character (NUL, ESC, newline and the like)");

      const event = usageEvent({ idempotencyKey: "cli-assign-1", billingAccountId: null, model: "gpt-4o" });
      const { rows } = await db.pool.query<{ id: string }>(
        "INSERT INTO quarantine (fingerprint, stage, reason, idempotency_key, item) VALUES ('cli-assign', 'worker', 'no_billing_account', $1, $2) RETURNING id",
        [event.idempotencyKey, JSON.stringify(event)],
      );
      try {
        const assigned = await ops("quarantine", "assign", rows[0]!.id, "cafe\u0301-team", "--json");
        expect(assigned.code).toBe(0);
        expect(JSON.parse(assigned.stdout)).toMatchObject({ assigned: true, billing_account_id: "caf\u00e9-team" });
        const { rows: stored } = await db.pool.query("SELECT item->>'billingAccountId' AS account FROM quarantine WHERE fingerprint = 'cli-assign'");
        expect(stored).toEqual([{ account: "caf\u00e9-team" }]);
      } finally {
        await db.pool.query("DELETE FROM quarantine WHERE fingerprint = 'cli-assign'");
      }
    });
  });

  it("lists the quarantine and answers usage errors with exit 2", async () => {
    expect(await ops("quarantine", "list")).toMatchObject({ code: 0, stdout: "quarantine is empty\n" });
    expect(JSON.parse((await ops("quarantine", "list", "--json")).stdout)).toEqual([]);
    expect((await ops("quarantine", "shred")).code).toBe(2);
    expect((await ops("no-such-command")).code).toBe(2);
    expect((await ops()).code).toBe(2);
    expect(await ops("--help")).toMatchObject({ code: 0, stdout: expect.stringContaining("quarantine") });
    // Every command and subcommand has its own help, from the parser's declarations.
    expect(await ops("quarantine", "--help")).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ {2}replay \[options\] +send refused items back/m) });
    expect(await ops("reconcile", "--help")).toMatchObject({ code: 0, stdout: expect.stringContaining("Usage: npm run ops -- reconcile [options]") });
    expect(await ops("grant", "--help")).toMatchObject({ code: 0, stdout: expect.stringContaining("<account> <credits> <reference>") });
    expect(await ops("quarantine", "replay", "--help")).toMatchObject({ code: 0, stdout: expect.stringContaining("--wait <seconds>") });
    expect(await ops("grant", "acct-only")).toMatchObject({ code: 2, stderr: expect.stringContaining("missing required argument 'credits'") });
    expect((await ops("gateway", "reconcile")).stderr).toContain("required option '--since <time>' not specified");
  });
});
