import type pg from "pg";
import type { Logger } from "pino";
import { and, inArray, isNull, lt, sql } from "drizzle-orm";
import { type Db, drizzleOver, jsonbText, withTransaction } from "../platform/db/client.js";
import { alertOutbox } from "../platform/db/schema.js";
import { type Alert, type AlertFields, type AlertName, emitAlert } from "./alert-catalog.js";

export type OutboxAlert = Alert & { outboxId: string };

/** Queues alerts inside the caller's transaction, so they exist exactly when their cause commits. */
export async function insertAlerts(client: pg.PoolClient, alerts: Alert[]): Promise<OutboxAlert[]> {
  if (alerts.length === 0) return [];
  // Raw SQL: the batch in one statement through unnest, each alert's fields made storable by jsonbText.
  const { rows } = await client.query<{ id: string; event: AlertName; fields: AlertFields }>(
    `INSERT INTO alert_outbox (event, fields)
     SELECT * FROM unnest($1::text[], $2::jsonb[]) RETURNING id, event, fields`,
    [alerts.map((alert) => alert.event), alerts.map((alert) => jsonbText(alert.fields))],
  );
  return rows.map((row) => ({ event: row.event, fields: row.fields, outboxId: row.id }));
}

/**
 * Logs alerts whose cause is committed, once. The rows are locked while they are logged and
 * marked, so the stranded-alert sweeper (which skips locked rows) never logs them a second
 * time; a crash between logging and marking leaves them to the sweeper: repeated, never lost.
 *
 * Never throws: the work that raised them is committed, and failing its job or request over
 * the delivery would redo it or answer an error for it. A fault is logged and the alerts are
 * left to the sweeper.
 */
export async function deliverCommittedAlerts(pool: pg.Pool, logger: Logger, alerts: OutboxAlert[]): Promise<void> {
  if (alerts.length === 0) return;
  await logOutboxAlerts(pool, logger, alerts).catch((error) =>
    logger.warn({ err: error, alerts: alerts.length }, "alert delivery deferred to the sweeper"),
  );
}

async function logOutboxAlerts(pool: pg.Pool, logger: Logger, alerts: OutboxAlert[]): Promise<void> {
  await withTransaction(pool, async (client) => {
    const db = drizzleOver(client);
    const rows = await db
      .select({ id: alertOutbox.id })
      .from(alertOutbox)
      .where(and(inArray(alertOutbox.id, alerts.map((alert) => BigInt(alert.outboxId))), isNull(alertOutbox.deliveredAt)))
      .for("update");
    const undelivered = new Set(rows.map((row) => row.id.toString()));
    for (const alert of alerts) if (undelivered.has(alert.outboxId)) emitAlert(logger, alert);
    await markDelivered(db, rows.map((row) => row.id));
  });
}

async function markDelivered(db: Db, outboxIds: bigint[]): Promise<void> {
  if (outboxIds.length === 0) return;
  await db.update(alertOutbox).set({ deliveredAt: sql`now()` }).where(inArray(alertOutbox.id, outboxIds));
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
    const db = drizzleOver(client);
    const rows = await db
      .select({ id: alertOutbox.id, event: alertOutbox.event, fields: alertOutbox.fields })
      .from(alertOutbox)
      .where(
        and(
          isNull(alertOutbox.deliveredAt),
          lt(alertOutbox.createdAt, sql`now() - make_interval(secs => ${options.olderThanMs}::double precision / 1000)`),
        ),
      )
      .orderBy(alertOutbox.id)
      .limit(options.limit ?? 1000)
      .for("update", { skipLocked: true });
    for (const row of rows) emitAlert(logger, { event: row.event as AlertName, fields: row.fields as AlertFields });
    await markDelivered(db, rows.map((row) => row.id));
    return rows.length;
  });
}
