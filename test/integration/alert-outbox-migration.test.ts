import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import pg from "pg";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { deliverCommittedAlerts, deliverStrandedAlerts, insertAlerts, pruneDeliveredAlerts } from "../../src/books/alert-outbox.js";
import { withTransaction } from "../../src/platform/db/client.js";
import { runMigrations } from "../../src/platform/db/migrate.js";
import { migrationsUpTo } from "../support/migrations.js";
import { adminQuery, databaseUrlFor } from "../support/test-env.js";

const LAST_BEFORE_BATCHES = "0015_usage_hourly";

const name = `spend_ingest_m_${randomBytes(6).toString("hex")}`;
const folder = migrationsUpTo(LAST_BEFORE_BATCHES);
let pool: pg.Pool | undefined;

afterAll(async () => {
  await pool?.end();
  await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  rmSync(folder, { recursive: true, force: true });
});

describe("the alert outbox's migration to one row per transaction", () => {
  it("keeps each alert written before it, still delivered if it was not, and new rows follow on", async () => {
    await adminQuery(`CREATE DATABASE ${name}`);
    await runMigrations(databaseUrlFor(name), folder);
    pool = new pg.Pool({ connectionString: databaseUrlFor(name) });
    // The outbox as the previous version wrote it: one row per alert.
    await pool.query(`
      INSERT INTO alert_outbox (id, event, fields, created_at, delivered_at) VALUES
        (1, 'inv_post_call_negative_balance', '{"billing_account_id": "old-a", "balance_after": -10}', now() - interval '10 days', now() - interval '10 days'),
        (2, 'balance_depleted', '{"billing_account_id": "old-b"}', now() - interval '2 days', NULL),
        (3, 'low_balance', '{"billing_account_id": "old-c", "threshold": 500}', now() - interval '1 day', now() - interval '1 day');
      SELECT setval('alert_outbox_id_seq', 3);
    `);
    await runMigrations(databaseUrlFor(name));

    const { rows } = await pool.query("SELECT id::int, alerts, delivered_at IS NOT NULL AS delivered FROM alert_outbox ORDER BY id");
    expect(rows).toEqual([
      { id: 1, alerts: [{ event: "inv_post_call_negative_balance", fields: { billing_account_id: "old-a", balance_after: -10 } }], delivered: true },
      { id: 2, alerts: [{ event: "balance_depleted", fields: { billing_account_id: "old-b" } }], delivered: false },
      { id: 3, alerts: [{ event: "low_balance", fields: { billing_account_id: "old-c", threshold: 500 } }], delivered: true },
    ]);

    const lines: string[] = [];
    const logger = pino({}, { write: (line: string) => lines.push(line) });
    expect(await deliverStrandedAlerts(pool, logger, { olderThanMs: 60_000, limit: 10 })).toBe(1);
    expect(lines.map((line) => JSON.parse(line))).toEqual([expect.objectContaining({ event: "balance_depleted", billing_account_id: "old-b" })]);
    const queued = await withTransaction(pool, (client) => insertAlerts(client, [{ event: "balance_depleted", fields: { billing_account_id: "new-a" } }]));
    expect(queued[0]!.outboxId).toBe("4");
    await deliverCommittedAlerts(pool, logger, queued);
    expect(lines).toHaveLength(2);
    expect(await pruneDeliveredAlerts(pool, { retentionMs: 7 * 86_400_000, limit: 10 })).toBe(1);
    expect((await pool.query("SELECT id::int FROM alert_outbox ORDER BY id")).rows.map((row) => row.id)).toEqual([2, 3, 4]);
  });
});
