import { pino } from "pino";
import { beforeEach, describe, expect, it } from "vitest";
import type { Alert } from "../../src/books/alert-catalog.js";
import {
  deliverCommittedAlerts,
  deliverStrandedAlerts,
  insertAlerts,
  type OutboxAlert,
  pruneDeliveredAlerts,
} from "../../src/books/alert-outbox.js";
import { recentDivergences } from "../../src/books/console-reads.js";
import { ENFORCEMENT_OFF } from "../../src/books/enforcement.js";
import { type PricedUsage, recordUsageBatch } from "../../src/books/record-usage.js";
import { inJsonbKeyOrder, withTransaction } from "../../src/platform/db/client.js";
import type { WorkerDeps } from "../../src/platform/deps.js";
import { createMetrics } from "../../src/platform/metrics.js";
import { startAlertPrune } from "../../src/worker/alert-prune.js";
import { useTestDatabase } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { pricedUsage as usage } from "../support/usage-events.js";

const db = useTestDatabase();
const DAY_MS = 86_400_000;

const record = (charges: PricedUsage[]) =>
  recordUsageBatch(db.pool, { charges, quarantines: [], priceBookHash: "test", lowBalanceThresholds: [], enforcement: ENFORCEMENT_OFF });

/** A logger whose raw lines are kept; `failOnAlert` makes the first alert line's write throw, after keeping it, as a process dying there would. */
function capture(options: { failOnAlert?: boolean } = {}) {
  const lines: string[] = [];
  let failing = options.failOnAlert === true;
  const logger = pino({}, {
    write: (line: string) => {
      lines.push(line);
      if (failing && line.includes('"event":')) {
        failing = false;
        throw new Error("died after logging");
      }
    },
  });
  const alertLines = () => lines.filter((line) => line.includes('"event":'));
  return { lines, alertLines, logger };
}

/** A line as the alerting pipeline reads it, less the time it was written. */
const untimed = (line: string) => line.replace(/"time":\d+,/, "");

async function queue(alerts: Alert[]): Promise<OutboxAlert[]> {
  return withTransaction(db.pool, (client) => insertAlerts(client, alerts));
}

async function outboxRows(): Promise<Array<{ id: string; alerts: Alert[]; delivered: boolean }>> {
  const { rows } = await db.pool.query("SELECT id, alerts, delivered_at IS NOT NULL AS delivered FROM alert_outbox ORDER BY id");
  return rows;
}

beforeEach(() => db.pool.query("DELETE FROM alert_outbox"));

describe("the alert outbox", () => {
  it("keeps a transaction's alerts in one row, and delivery marks that row and logs each alert once", async () => {
    const result = await record([usage("row-1", "acct-row-a", 10), usage("row-2", "acct-row-b", 20), usage("row-3", "acct-row-a", 30)]);
    expect(result.alerts.map((alert) => alert.event)).toEqual(["inv_post_call_negative_balance", "inv_post_call_negative_balance", "inv_post_call_negative_balance"]);
    expect(new Set(result.alerts.map((alert) => alert.outboxId)).size).toBe(1);
    const [row] = await outboxRows();
    expect(row).toMatchObject({ id: result.alerts[0]!.outboxId, delivered: false });
    expect(row!.alerts.map((alert) => alert.fields.idempotency_key)).toEqual(["row-1", "row-2", "row-3"]);

    const { alertLines, logger } = capture();
    await deliverCommittedAlerts(db.pool, logger, result.alerts);
    await deliverCommittedAlerts(db.pool, logger, result.alerts);
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 10 })).toBe(0);
    expect(alertLines().map((line) => JSON.parse(line).idempotency_key)).toEqual(["row-1", "row-2", "row-3"]);
    expect(await outboxRows()).toEqual([expect.objectContaining({ delivered: true })]);
  });

  it("logs the same bytes live as the sweeper does from the row, fields in jsonb's key order as they always were", async () => {
    const alerts: Alert[] = [
      { event: "low_balance", fields: { threshold: 500, billing_account_id: "acct-bytes", zz: { b: 1, aa: [{ yy: "é", x: null }] }, "10": true, "9": "\u0000" } },
      { event: "enforcement_blocked", fields: { principal: "team-1", kind: "team", billing_account_id: "acct-bytes" } },
    ];
    const live = capture();
    const queued = await queue(alerts);
    await deliverCommittedAlerts(db.pool, live.logger, queued);
    // The row as PostgreSQL gives it back is what the live lines carried.
    expect((await outboxRows())[0]!.alerts.map((alert) => JSON.stringify(alert.fields))).toEqual(queued.map((alert) => JSON.stringify(alert.fields)));
    await db.pool.query("UPDATE alert_outbox SET delivered_at = NULL");
    const swept = capture();
    expect(await deliverStrandedAlerts(db.pool, swept.logger, { olderThanMs: 0, limit: 10 })).toBe(2);
    expect(live.alertLines().map(untimed)).toEqual(swept.alertLines().map(untimed));
    expect(JSON.parse(live.alertLines()[0]!)).toMatchObject({ level: 40, event: "low_balance", "9": "\\u0000", msg: expect.stringMatching(/^low_balance: /) });
  });

  it("orders keys as jsonb does: shortest first, then by their UTF-8 bytes", async () => {
    const value = { bb: 1, a: { "é": 1, z: 2, yy: [{ d: 1, c: 2 }] }, ab: 2, "ä": 3, "10": 4, "2": 5 };
    const { rows } = await db.pool.query("SELECT $1::jsonb AS value", [JSON.stringify(value)]);
    expect(JSON.stringify(inJsonbKeyOrder(value))).toBe(JSON.stringify(rows[0].value));
  });

  it("delivers a row a process committed and never delivered (it died after commit), every alert once", async () => {
    await record([usage("dead-1", "acct-dead", 10), usage("dead-2", "acct-dead", 10)]);
    const { alertLines, logger } = capture();
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 60_000, limit: 10 })).toBe(0);
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 10 })).toBe(2);
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 10 })).toBe(0);
    expect(alertLines().map((line) => JSON.parse(line).idempotency_key)).toEqual(["dead-1", "dead-2"]);
  });

  it("a process that dies between logging and its mark's commit leaves the row to the sweeper: repeated, never lost", async () => {
    const result = await record([usage("mid-1", "acct-mid", 10), usage("mid-2", "acct-mid", 10)]);
    const dying = capture({ failOnAlert: true });
    await deliverCommittedAlerts(db.pool, dying.logger, result.alerts);
    expect(dying.alertLines().map((line) => JSON.parse(line).idempotency_key)).toEqual(["mid-1"]);
    expect(dying.lines.some((line) => line.includes("alert delivery deferred to the sweeper"))).toBe(true);
    const sweeper = capture();
    expect(await deliverStrandedAlerts(db.pool, sweeper.logger, { olderThanMs: 0, limit: 10 })).toBe(2);
    expect(sweeper.alertLines().map((line) => JSON.parse(line).idempotency_key)).toEqual(["mid-1", "mid-2"]);
  });

  it("the sweeper skips a row a live process is delivering, and takes it if that process dies", async () => {
    const [queued] = await queue([{ event: "balance_depleted", fields: { billing_account_id: "acct-held" } }]);
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      // What deliverCommittedAlerts does before it logs: the mark, holding the row's lock.
      await holder.query("UPDATE alert_outbox SET delivered_at = now() WHERE id = $1", [queued!.outboxId]);
      const { alertLines, logger } = capture();
      expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 10 })).toBe(0);
      await holder.query("ROLLBACK");
      expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 10 })).toBe(1);
      expect(alertLines()).toHaveLength(1);
    } finally {
      holder.release();
    }
  });

  it("a sweep takes at most `limit` rows, oldest first", async () => {
    for (const key of ["lim-1", "lim-2", "lim-3"]) await queue([{ event: "balance_depleted", fields: { billing_account_id: key } }]);
    const { alertLines, logger } = capture();
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 2 })).toBe(2);
    expect(await deliverStrandedAlerts(db.pool, logger, { olderThanMs: 0, limit: 2 })).toBe(1);
    expect(alertLines().map((line) => JSON.parse(line).billing_account_id)).toEqual(["lim-1", "lim-2", "lim-3"]);
  });
});

describe("pruning delivered alerts", () => {
  /** A row delivered (or, with `deliveredAgo` null, created and never delivered) that long ago by the database's clock. */
  async function rowAged(name: string, ago: { deliveredAgo: string | null; createdAgo?: string }): Promise<string> {
    const [queued] = await queue([{ event: "balance_depleted", fields: { billing_account_id: name } }]);
    await db.pool.query(
      "UPDATE alert_outbox SET created_at = now() - $2::interval, delivered_at = now() - $3::interval WHERE id = $1",
      [queued!.outboxId, ago.createdAgo ?? ago.deliveredAgo, ago.deliveredAgo],
    );
    return name;
  }
  const remaining = async () => (await outboxRows()).map((row) => row.alerts[0]!.fields.billing_account_id);

  it("deletes rows delivered longer ago than the retention, a bounded batch a call, oldest delivery first; never one undelivered", async () => {
    await rowAged("delivered-8d", { deliveredAgo: "8 days" });
    await rowAged("delivered-9d", { deliveredAgo: "9 days" });
    await rowAged("delivered-10d", { deliveredAgo: "10 days" });
    await rowAged("delivered-6d23h", { deliveredAgo: "6 days 23 hours" });
    await rowAged("undelivered-30d", { deliveredAgo: null, createdAgo: "30 days" });
    await rowAged("delivered-now", { deliveredAgo: "0 seconds" });

    expect(await pruneDeliveredAlerts(db.pool, { retentionMs: 7 * DAY_MS, limit: 2 })).toBe(2);
    expect(await remaining()).toEqual(["delivered-8d", "delivered-6d23h", "undelivered-30d", "delivered-now"]);
    expect(await pruneDeliveredAlerts(db.pool, { retentionMs: 7 * DAY_MS, limit: 2 })).toBe(1);
    expect(await pruneDeliveredAlerts(db.pool, { retentionMs: 7 * DAY_MS, limit: 2 })).toBe(0);
    expect(await remaining()).toEqual(["delivered-6d23h", "undelivered-30d", "delivered-now"]);
    // A shorter retention takes more; the undelivered row stays whatever its age.
    expect(await pruneDeliveredAlerts(db.pool, { retentionMs: 1_000, limit: 10 })).toBe(1);
    expect(await remaining()).toEqual(["undelivered-30d", "delivered-now"]);
  });

  it("skips a row another session holds rather than waiting for it", async () => {
    await rowAged("held-8d", { deliveredAgo: "8 days" });
    await rowAged("free-8d", { deliveredAgo: "8 days" });
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT id FROM alert_outbox WHERE alerts->0->'fields'->>'billing_account_id' = 'held-8d' FOR UPDATE");
      expect(await pruneDeliveredAlerts(db.pool, { retentionMs: 7 * DAY_MS, limit: 10 })).toBe(1);
      await holder.query("COMMIT");
    } finally {
      holder.release();
    }
    expect(await remaining()).toEqual(["held-8d"]);
  });
});

describe("the workers' alert prune", () => {
  it("deletes every row past the retention in one run of bounded statements, and counts them", async () => {
    await db.pool.query(`
      INSERT INTO alert_outbox (alerts, created_at, delivered_at)
      SELECT jsonb_build_array(jsonb_build_object('event', 'balance_depleted', 'fields', jsonb_build_object('billing_account_id', 'old-' || n))),
             now() - interval '9 days', now() - interval '9 days'
        FROM generate_series(1, 1201) n`);
    const [kept] = await queue([{ event: "balance_depleted", fields: { billing_account_id: "kept" } }]);
    await db.pool.query("UPDATE alert_outbox SET delivered_at = now() - interval '1 day' WHERE id = $1", [kept!.outboxId]);
    const metrics = createMetrics([]);
    const deps = { database: { pool: db.pool }, settings: { alertRetentionMs: 7 * DAY_MS }, metrics, logger: pino({ level: "silent" }) } as unknown as WorkerDeps;
    // It runs at start, and is stopped once that run has pruned: a stop would end the run early.
    const prune = startAlertPrune(deps);
    await waitFor(async () => (await outboxRows()).length === 1);
    await prune.stop();
    expect(await outboxRows()).toEqual([expect.objectContaining({ id: kept!.outboxId })]);
    expect(await metrics.registry.getSingleMetricAsString("spend_ingest_alert_outbox_pruned_total")).toContain("spend_ingest_alert_outbox_pruned_total 1201");
  });
});

describe("the console's recent divergences", () => {
  const divergence = (key: string): Alert => ({
    event: "inv_price_divergence",
    fields: { idempotency_key: key, billing_account_id: "acct-div", model: "m", charged_credits: 10, reported_credits: 12, gateway_credits: 10 },
  });

  it("reads alerts inside each transaction's row, newest first", async () => {
    await queue([divergence("div-1"), { event: "balance_depleted", fields: { billing_account_id: "acct-div" } }, divergence("div-2")]);
    await queue([divergence("div-3")]);
    const read = await recentDivergences(db.pool, new Date(Date.now() - DAY_MS), 2);
    expect(read).toMatchObject({ count: 3, capped: false });
    expect(read.newest.map((row) => row.idempotencyKey)).toEqual(["div-3", "div-2"]);
    expect(read.newest[0]).toMatchObject({ billingAccountId: "acct-div", chargedCredits: 10, reportedCredits: 12, gatewayCredits: 10 });
    expect(await recentDivergences(db.pool, new Date(Date.now() + DAY_MS), 2)).toMatchObject({ count: 0, newest: [] });
  });
});
