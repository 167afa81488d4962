import type pg from "pg";
import type { Logger } from "pino";
import { jsonbText, withTransaction } from "../platform/db/client.js";
import { type Alert, type AlertFields, type AlertName, emitAlert } from "./alert-catalog.js";

export type OutboxAlert = Alert & { outboxId: string };

/** Queues alerts inside the caller's transaction, so they exist exactly when their cause commits. */
export async function insertAlerts(client: pg.PoolClient, alerts: Alert[]): Promise<OutboxAlert[]> {
  if (alerts.length === 0) return [];
  const { rows } = await client.query<{ id: string; event: AlertName; fields: AlertFields }>(
    `INSERT INTO alert_outbox (event, fields)
     SELECT * FROM unnest($1::text[], $2::jsonb[]) RETURNING id, event, fields`,
    [alerts.map((alert) => alert.event), alerts.map((alert) => jsonbText(alert.fields))],
  );
  return rows.map((row) => ({ event: row.event, fields: row.fields, outboxId: row.id }));
}

/**
 * Logs committed alerts once. The rows are locked while they are logged and marked, so the
 * stranded-alert sweeper (which skips locked rows) never logs them a second time; a crash
 * between logging and marking leaves them to the sweeper: repeated, never lost.
 */
export async function deliverAlerts(pool: pg.Pool, logger: Logger, alerts: OutboxAlert[]): Promise<void> {
  if (alerts.length === 0) return;
  await withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ id: string }>(
      "SELECT id FROM alert_outbox WHERE id = ANY($1::bigint[]) AND delivered_at IS NULL FOR UPDATE",
      [alerts.map((alert) => alert.outboxId)],
    );
    const undelivered = new Set(rows.map((row) => row.id));
    for (const alert of alerts) if (undelivered.has(alert.outboxId)) emitAlert(logger, alert);
    await markDelivered(client, [...undelivered]);
  });
}

async function markDelivered(queryable: pg.PoolClient, outboxIds: string[]): Promise<void> {
  if (outboxIds.length === 0) return;
  await queryable.query("UPDATE alert_outbox SET delivered_at = now() WHERE id = ANY($1::bigint[])", [outboxIds]);
}

/**
 * Delivers alerts whose process died between commit and delivery. Only rows older than
 * `olderThanMs` are taken, so alerts a live worker is about to deliver are left to it.
 */
export async function deliverStrandedAlerts(
  pool: pg.Pool,
  logger: Logger,
  options: { olderThanMs: number; limit?: number },
): Promise<number> {
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ id: string; event: AlertName; fields: AlertFields }>(
      `SELECT id, event, fields FROM alert_outbox
       WHERE delivered_at IS NULL AND created_at < now() - make_interval(secs => $1::double precision / 1000)
       ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [options.olderThanMs, options.limit ?? 1000],
    );
    for (const row of rows) emitAlert(logger, { event: row.event, fields: row.fields });
    await markDelivered(client, rows.map((row) => row.id));
    return rows.length;
  });
}
