import { exec } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { litellmPayload, STANDARD_LOGGING_PAYLOAD } from "../support/litellm-payloads.js";
import { waitFor } from "../support/wait.js";
import { freePort } from "../support/ports.js";
import { listeningAddresses, type ServiceProcess, startServiceProcess } from "../support/service-process.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { adminQuery, databaseUrlFor, TEST_REDIS_URL } from "../support/test-env.js";

const database = `spend_ingest_dev_${randomBytes(6).toString("hex")}`;
const prefix = useQueuePrefix();

/** A line `npm run dev` printed, run as a developer's shell runs it pasted, with nothing else set. */
const runPasted = (line: string) => promisify(exec)(line, { env: { PATH: process.env.PATH, HOME: process.env.HOME } });

afterAll(async () => {
  await adminQuery(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
});

describe("npm run dev", () => {
  let service: ServiceProcess;
  let port: number;
  let baseUrl: string;
  let pool: pg.Pool;
  /** The line `offset` lines below the first printed line that starts with `header`, as it would be pasted. */
  const printed = (header: string, offset = 1) => {
    const at = service.lines.findIndex((line) => line.startsWith(header));
    expect(at, header).toBeGreaterThanOrEqual(0);
    return service.lines[at + offset]!.trim();
  };
  const token = (name: string) => new RegExp(`^  ${name}=(\\S+)$`).exec(service.lines.find((line) => line.startsWith(`  ${name}=`)) ?? "")?.[1];

  beforeAll(async () => {
    port = await freePort();
    service = startServiceProcess("dev", {
      // Set, as a developer's shell may have it: dev runs with it.
      NODE_ENV: "Development",
      DATABASE_URL: databaseUrlFor(database),
      REDIS_URL: TEST_REDIS_URL,
      PORT: String(port),
      QUEUE_PREFIX: prefix,
    });
    baseUrl = await service.listeningAt;
    // Printed once it serves, the balance line last.
    await waitFor(() => service.lines.some((line) => line.includes("/credits/summary")));
    pool = new pg.Pool({ connectionString: databaseUrlFor(database), max: 2 });
  });

  afterAll(async () => {
    await pool?.end();
    const closed = new Promise((resolve) => service.child.once("close", resolve));
    service.child.kill("SIGTERM");
    await closed;
    expect(service.child.exitCode).toBe(0);
  });

  it("creates a missing database, migrates, listens on loopback, and serves callbacks with the development tokens it prints", async () => {
    // Only this machine reaches a service whose tokens were printed on a terminal.
    expect(listeningAddresses(service.pid!)).toEqual([{ address: "127.0.0.1", port }]);
    expect(service.lines).toContain(`  listening on 127.0.0.1 port ${port} only (HOST=0.0.0.0 opens it to other machines)`);
    const ingestToken = token("INGEST_TOKENS");
    const adminToken = token("ADMIN_TOKEN");
    expect(ingestToken).toMatch(/^dev-ingest-[0-9a-f]{32}$/);
    expect(adminToken).toMatch(/^dev-admin-[0-9a-f]{32}$/);
    // The console too, signed into with the token printed beside its address.
    const consoleLine = service.lines.find((line) => line.startsWith("  CONSOLE_TOKEN="))!;
    expect(consoleLine).toMatch(new RegExp(`^  CONSOLE_TOKEN=dev-console-[0-9a-f]{32}  \\(sign in at ${baseUrl}/console\\)$`));
    const signIn = await fetch(`${baseUrl}/console/sign-in`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `token=${/CONSOLE_TOKEN=(\S+)/.exec(consoleLine)![1]}`,
    });
    expect(signIn.status).toBe(303);
    expect(service.lines).toContain(`spend-ingest dev: created database ${database}`);

    const posted = await fetch(`${baseUrl}/v1/callbacks/litellm`, {
      method: "POST",
      headers: { authorization: `Bearer ${ingestToken}`, "content-type": "application/json" },
      body: JSON.stringify([litellmPayload("dev-call-1", "dev-team")]),
    });
    expect(posted.status).toBe(202);
    await waitFor(async () => {
      const summary = await fetch(`${baseUrl}/v1/accounts/dev-team/credits/summary`, { headers: { authorization: `Bearer ${adminToken}` } });
      return summary.status === 200 && ((await summary.json()) as { balance_credits: number }).balance_credits < 0;
    });
    // Nothing it printed went to the structured log with a token in it.
    expect(service.lines.filter((line) => line.startsWith("{") && line.includes(ingestToken!))).toEqual([]);
  });

  it("prints a call to try that, run as printed, is priced, and with no grant raises inv_post_call_negative_balance", async () => {
    const send = printed("spend-ingest dev: try it");
    expect(JSON.parse((await runPasted(send)).stdout)).toEqual({ accepted: 1, rejected: [] });
    let receipt: { error?: unknown; billing_account_id: string; pricing_source: string; charged_credits: number; balance_after: number } | undefined;
    await waitFor(async () => {
      receipt = JSON.parse((await runPasted(printed("spend-ingest dev: its receipt", 1))).stdout);
      return receipt!.error === undefined;
    });
    expect(receipt).toMatchObject({ billing_account_id: "team-try-it", pricing_source: "price_book" });
    expect(receipt!.charged_credits).toBeGreaterThan(0);
    expect(receipt!.balance_after).toBe(-receipt!.charged_credits);
    const balance = JSON.parse((await runPasted(printed("spend-ingest dev: its receipt", 2))).stdout);
    expect(balance).toMatchObject({ billing_account_id: "team-try-it", balance_credits: -receipt!.charged_credits, status: "negative" });
    await waitFor(() =>
      service.lines.some((line) => line.startsWith("{") && JSON.parse(line).event === "inv_post_call_negative_balance" && JSON.parse(line).billing_account_id === "team-try-it"),
    );
  });

  it("prints the ops command line that reaches its database and queue: an item replayed with it is charged", async () => {
    const opsLine = printed("spend-ingest dev: ops beside it");
    expect(opsLine).toContain(`QUEUE_PREFIX=${prefix} npm run -s ops -- quarantine list`);
    const ops = (command: string) => runPasted(opsLine.replace(/ quarantine list$/, ` ${command}`));
    // LiteLLM's own example names no payer: accepted, then quarantined no_billing_account.
    const posted = await fetch(`${baseUrl}/v1/callbacks/litellm`, {
      method: "POST",
      headers: { authorization: `Bearer ${token("INGEST_TOKENS")}`, "content-type": "application/json" },
      body: JSON.stringify([{ ...STANDARD_LOGGING_PAYLOAD, id: "dev-no-payer" }]),
    });
    expect(posted.status).toBe(202);
    const quarantined = async () => (await pool.query("SELECT id::text FROM quarantine WHERE idempotency_key = 'dev-no-payer' AND reason = 'no_billing_account'")).rows;
    await waitFor(async () => (await quarantined()).length === 1);
    const [{ id }] = await quarantined();
    expect(JSON.parse((await ops("quarantine list --json")).stdout)).toEqual([expect.objectContaining({ idempotencyKey: "dev-no-payer" })]);
    await ops(`quarantine assign ${id} team-dev-assigned`);
    // Exit 0, or exec throws: 1 would say no worker reads the queue it sent to.
    const replayed = await ops("quarantine replay --wait 20 --json");
    expect(JSON.parse(replayed.stdout)).toMatchObject({ replayed: 1, charged: 1, stillPending: 0 });
  });

  it("is refused, in one line, with any NODE_ENV but unset, development or test", async () => {
    for (const nodeEnv of ["production", "Production", "prod", "staging"]) {
      const refused = startServiceProcess("dev", { NODE_ENV: nodeEnv, DATABASE_URL: databaseUrlFor(database), REDIS_URL: TEST_REDIS_URL });
      // "close": after the exit and the last of its output.
      const code = await new Promise((resolve) => refused.child.once("close", resolve));
      expect({ nodeEnv, code, lines: refused.lines }).toEqual({
        nodeEnv,
        code: 2,
        lines: ["spend-ingest: npm run dev makes up its own tokens and runs only with NODE_ENV unset, development or test; use npm start"],
      });
    }
  });
});
