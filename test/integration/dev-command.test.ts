import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { litellmPayload } from "../support/litellm-payloads.js";
import { waitFor } from "../support/wait.js";
import { freePort } from "../support/ports.js";
import { listeningAddresses, startServiceProcess } from "../support/service-process.js";
import { adminQuery, databaseUrlFor, TEST_REDIS_URL } from "../support/test-env.js";

const database = `spend_ingest_dev_${randomBytes(6).toString("hex")}`;

afterAll(() => adminQuery(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));

describe("npm run dev", () => {
  it("creates a missing database, migrates, and serves callbacks with the development tokens it prints", async () => {
    const port = await freePort();
    const service = startServiceProcess("dev", {
      // Set, as a developer's shell may have it: dev runs with it.
      NODE_ENV: "Development",
      DATABASE_URL: databaseUrlFor(database),
      REDIS_URL: TEST_REDIS_URL,
      PORT: String(port),
      QUEUE_PREFIX: database,
    });
    try {
      const baseUrl = await service.listeningAt;
      // Only this machine reaches a service whose tokens were printed on a terminal.
      expect(listeningAddresses(service.pid!)).toEqual([{ address: "127.0.0.1", port }]);
      const token = (name: string) => new RegExp(`^  ${name}=(\\S+)$`).exec(service.lines.find((line) => line.startsWith(`  ${name}=`)) ?? "")?.[1];
      const ingestToken = token("INGEST_TOKENS");
      const adminToken = token("ADMIN_TOKEN");
      expect(ingestToken).toMatch(/^dev-ingest-[0-9a-f]{32}$/);
      expect(adminToken).toMatch(/^dev-admin-[0-9a-f]{32}$/);
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
    } finally {
      service.child.kill("SIGTERM");
      await new Promise((resolve) => service.child.once("close", resolve));
    }
    expect(service.child.exitCode).toBe(0);
    const client = new pg.Client({ connectionString: databaseUrlFor(database) });
    await client.connect();
    const { rows } = await client.query("SELECT count(*)::int AS receipts FROM charge_receipts");
    await client.end();
    expect(rows[0].receipts).toBe(1);
  });

  it("is refused, in one line, with any NODE_ENV but unset, development or test", async () => {
    for (const nodeEnv of ["production", "Production", "prod", "staging"]) {
      const service = startServiceProcess("dev", { NODE_ENV: nodeEnv, DATABASE_URL: databaseUrlFor(database), REDIS_URL: TEST_REDIS_URL });
      // "close": after the exit and the last of its output.
      const code = await new Promise((resolve) => service.child.once("close", resolve));
      expect({ nodeEnv, code, lines: service.lines }).toEqual({
        nodeEnv,
        code: 2,
        lines: ["spend-ingest: npm run dev makes up its own tokens and runs only with NODE_ENV unset, development or test; use npm start"],
      });
    }
  });
});
