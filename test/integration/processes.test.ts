import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdirSync } from "node:fs";
import type { Readable } from "node:stream";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MINIMUM_NODE_VERSION } from "../../src/platform/node-version.js";
import { createUsageQueue } from "../../src/platform/queue-producer.js";
import { waitFor } from "../support/wait.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { runOpsWith } from "../support/ops-cli.js";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { ADMIN_TOKEN, adminQuery, databaseUrlFor, INGEST_TOKEN, TEST_REDIS_URL } from "../support/test-env.js";

// A fresh, empty database: `npm start` must create the schema itself.
const database = `spend_ingest_p_${randomBytes(6).toString("hex")}`;
const prefix = useQueuePrefix();

const serviceEnv = () => ({
  DATABASE_URL: databaseUrlFor(database),
  REDIS_URL: TEST_REDIS_URL,
  INGEST_TOKENS: INGEST_TOKEN,
  ADMIN_TOKEN,
  PORT: "0",
  METRICS_PORT: "0",
  QUEUE_PREFIX: prefix,
});

describe("npm start (all-in-one process)", () => {
  const services: ServiceProcess[] = [];

  beforeAll(async () => {
    await adminQuery(`CREATE DATABASE ${database}`);
  });

  afterAll(async () => {
    for (const service of services) if (service.child.exitCode === null) service.child.kill("SIGKILL");
    await adminQuery(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  });

  it("migrates from two processes at once, serves the contract and stops cleanly on SIGTERM", async () => {
    services.push(startServiceProcess("all-in-one", serviceEnv()), startServiceProcess("all-in-one", serviceEnv()));
    const [first, second] = await Promise.all(services.map((service) => service.listeningAt));

    const batch = [1, 2].map((n) => litellmPayload(`process-${n}`, "team-process"));
    const posted = await fetch(`${first}/v1/callbacks/litellm`, {
      method: "POST",
      headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(batch),
    });
    expect(posted.status).toBe(202);

    const summary = async () =>
      fetch(`${second}/v1/accounts/team-process/credits/summary`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await waitFor(async () => (await summary()).status === 200);
    await waitFor(async () => ((await (await summary()).json()) as { balance_credits: number }).balance_credits === -4500);
    expect((await fetch(`${second}/readyz`)).status).toBe(200);

    services[0]!.child.kill("SIGHUP");
    await waitFor(() => services[0]!.lines.some((line) => line.includes('"msg":"price book reloaded"')));

    const exits = services.map((service) => once(service.child, "exit"));
    for (const service of services) service.child.kill("SIGTERM");
    const codes = (await Promise.all(exits)).map(([code]) => code);
    expect(codes).toEqual([0, 0]);
    const logged = services.flatMap((service) => service.lines).join("\n");
    expect(logged).toContain('"msg":"shut down"');
    expect(logged).not.toContain(INGEST_TOKEN);
    expect(logged).not.toContain(ADMIN_TOKEN);
  });

  it("finishes the jobs in hand on SIGTERM mid-load: nothing lost, nothing charged twice after restart", async () => {
    const receiver = startServiceProcess("receiver", serviceEnv());
    services.push(receiver);
    const receiverUrl = await receiver.listeningAt;
    const batches = 16;
    for (let batch = 0; batch < batches; batch++) {
      const items = Array.from({ length: 512 }, (_, n) => litellmPayload(`sigterm-${batch}-${n}`, `sigterm-acct-${n % 50}`));
      const posted = await fetch(`${receiverUrl}/v1/callbacks/litellm`, {
        method: "POST",
        headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(items),
      });
      expect(posted.status).toBe(202);
    }
    const total = batches * 512;
    const pool = new pg.Pool({ connectionString: databaseUrlFor(database) });
    const receipts = async () =>
      (await pool.query("SELECT count(*)::int AS n FROM charge_receipts WHERE idempotency_key LIKE 'sigterm-%'")).rows[0].n as number;
    try {
      const worker = startServiceProcess("usage-worker", serviceEnv());
      services.push(worker);
      await worker.listeningAt;
      await waitFor(async () => (await receipts()) > 0, 30_000);
      // Each process exposes its own metrics: the receiver what it received, the worker what it charged.
      const metric = async (url: string, name: string) =>
        Number(new RegExp(`^${name} (\\S+)$`, "m").exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? Number.NaN);
      expect(await metric(receiverUrl, "spend_ingest_events_received_total")).toBe(total);
      // Counted just after the commit that the receipts query may already see.
      await waitFor(async () => (await metric(await worker.listeningAt, "spend_ingest_charges_recorded_total")) > 0);
      expect(await metric(await worker.listeningAt, "spend_ingest_events_received_total")).toBe(0);
      const [code] = await (async () => {
        const exited = once(worker.child, "exit");
        worker.child.kill("SIGTERM");
        return exited;
      })();
      expect(code).toBe(0);
      const charged = await receipts();
      expect(charged).toBeLessThan(total); // it really was stopped mid-load

      const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
      const queue = createUsageQueue(redis, prefix);
      expect(await queue.getJobCounts("active", "failed")).toEqual({ active: 0, failed: 0 });

      const restarted = startServiceProcess("usage-worker", serviceEnv());
      services.push(restarted);
      await waitFor(async () => (await receipts()) === total, 60_000);
      await waitFor(async () => (await queue.getJobCounts("waiting", "active")).waiting === 0);
      const { rows } = await pool.query(
        `SELECT count(*)::int AS entries, count(DISTINCT reference)::int AS keys
         FROM ledger_entries WHERE reference LIKE 'sigterm-%'`,
      );
      expect(rows[0]).toEqual({ entries: total, keys: total });
      await queue.close();
      await redis.quit();
      receiver.child.kill("SIGTERM");
      restarted.child.kill("SIGTERM");
      await Promise.all([once(receiver.child, "exit"), once(restarted.child, "exit")]);
    } finally {
      await pool.end();
    }
  }, 120_000);

  it("refuses to start with a line for each missing setting, all at once, an empty one missing too", async () => {
    const { INGEST_TOKENS: _omitted, ...env } = serviceEnv();
    const service = startServiceProcess("all-in-one", { ...env, DATABASE_URL: "", ADMIN_TOKEN: "" });
    const [code] = await once(service.child, "exit");
    expect(code).toBe(2);
    expect(service.lines).toEqual([
      "spend-ingest: invalid setting DATABASE_URL: is required",
      "spend-ingest: invalid setting INGEST_TOKENS: is required",
      "spend-ingest: invalid setting ADMIN_TOKEN: is required",
    ]);
  });

  it("starts a worker without the receiver's settings, and a bad one of them is not its concern", async () => {
    const { DATABASE_URL, REDIS_URL, QUEUE_PREFIX } = serviceEnv();
    const worker = startServiceProcess("usage-worker", { DATABASE_URL, REDIS_URL, QUEUE_PREFIX, METRICS_PORT: "0", PORT: "eighty", MAX_BODY_BYTES: "0" });
    services.push(worker);
    // Its start line comes once it stops in order on SIGTERM.
    await waitFor(() => worker.lines.some((line) => line.includes('"msg":"usage worker started"')));
    const exited = once(worker.child, "exit");
    worker.child.kill("SIGTERM");
    expect((await exited)[0]).toBe(0);
    expect(worker.errors).toEqual([]);
  });

  it("keeps its queue in REDIS_URL's database: a process on database N writes its keys there, none in database 0", async () => {
    const index = (await redisDatabaseCount()) - 1;
    const [onIndex, onZero] = [index, 0].map((n) => new Redis(redisUrlOn(n), { maxRetriesPerRequest: null }));
    const prefixOnIndex = `${prefix}_db${index}`;
    const queue = createUsageQueue(onIndex!, prefixOnIndex);
    try {
      const service = startServiceProcess("all-in-one", { ...serviceEnv(), REDIS_URL: redisUrlOn(index), QUEUE_PREFIX: prefixOnIndex });
      services.push(service);
      const url = await service.listeningAt;
      const posted = await fetch(`${url}/v1/callbacks/litellm`, {
        method: "POST",
        headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify([litellmPayload("database-index-1", "team-database-index")]),
      });
      expect(posted.status).toBe(202);
      await waitFor(async () => (await queue.getJobCounts("completed")).completed === 1);
      const keys = async (client: Redis) => (await client.keys(`${prefixOnIndex}:*`)).length;
      expect(await keys(onIndex!)).toBeGreaterThan(0);
      expect(await keys(onZero!)).toBe(0);
      const exited = once(service.child, "exit");
      service.child.kill("SIGTERM");
      expect((await exited)[0]).toBe(0);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
      await Promise.all([onIndex!.quit(), onZero!.quit()]);
    }
  });

  it("refuses, in every process that uses Redis, a database Redis does not have: one line naming REDIS_URL without its password, exit 2", async () => {
    const missing = await redisDatabaseCount();
    const url = new URL(redisUrlOn(missing));
    // A password the server takes (one it does not need is taken too), to see it masked.
    url.password ||= "redis-password-not-printed";
    const password = url.password;
    const shown = new URL(url);
    shown.password = "***";
    const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    // Redis's own words for it vary by version ("ERR DB index is out of range", "ERR invalid DB index").
    const line = new RegExp(`^spend-ingest: invalid setting REDIS_URL: Redis at ${literal(shown.toString())} refused database ${missing} \\(ERR [^)]+\\)$`);
    const env = { ...serviceEnv(), REDIS_URL: url.toString() };
    for (const entry of ["receiver", "usage-worker", "all-in-one"] as const) {
      const service = startServiceProcess(entry, env);
      const [code] = await once(service.child, "exit");
      expect({ entry, code, lines: service.lines }).toEqual({ entry, code: 2, lines: [expect.stringMatching(line)] });
      expect(service.lines.join("\n")).not.toContain(password);
    }
    const ops = await runOpsWith({ REDIS_URL: url.toString(), QUEUE_PREFIX: prefix }, "queues");
    expect({ ...ops, stderr: ops.stderr.trimEnd() }).toEqual({ code: 2, stdout: "", stderr: expect.stringMatching(line) });
  });
});

describe("every entry point on a Node.js older than the minimum", () => {
  // Node itself cannot be swapped in a test: a module loaded first makes this one report 22.11.0,
  // the last version whose require() cannot load an ES module.
  const olderNode = `data:text/javascript,Object.defineProperty(process.versions, "node", { value: "22.11.0" })`;

  it("exits 2 with one line naming the required version, before reading any setting", async () => {
    const entries = readdirSync("bin").filter((file) => file.endsWith(".ts")).map((file) => file.replace(/\.ts$/, ""));
    expect(entries).toEqual(expect.arrayContaining(["all-in-one", "dev", "migrate", "ops", "receiver", "usage-worker"]));
    for (const entry of entries) {
      const child = spawn(process.execPath, ["--import", olderNode, `dist/bin/${entry}.js`, "queues"], {
        env: { PATH: process.env.PATH },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const [stdout, stderr] = [child.stdout, child.stderr].map((stream) => text(stream));
      const [code] = await once(child, "exit");
      expect({ entry, code, stdout: await stdout, stderr: await stderr }).toEqual({
        entry,
        code: 2,
        stdout: "",
        stderr: `spend-ingest: Node.js ${MINIMUM_NODE_VERSION} or newer is required; this is Node.js 22.11.0 (${process.execPath})\n`,
      });
    }
  });
});

/** How many databases the test Redis has (16 unless its config says otherwise). */
async function redisDatabaseCount(): Promise<number> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  try {
    const [, databases] = (await redis.config("GET", "databases")) as [string, string];
    return Number(databases);
  } finally {
    await redis.quit();
  }
}

/** The test Redis's URL with another database index. */
function redisUrlOn(index: number): string {
  const url = new URL(TEST_REDIS_URL);
  url.pathname = `/${index}`;
  return url.toString();
}

async function text(stream: Readable): Promise<string> {
  let collected = "";
  for await (const chunk of stream) collected += String(chunk);
  return collected;
}
