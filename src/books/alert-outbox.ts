import type pg from "pg";
import type { Logger } from "pino";
import { inJsonbKeyOrder, jsonbText, withTransaction } from "../platform/db/client.js";
import { type Alert, emitAlert } from "./alert-catalog.js";

/** An alert and the outbox row that holds it with the rest of its transaction's alerts. */
export type OutboxAlert = Alert & { outboxId: string };

/**
 * Queues a transaction's alerts inside it, so they exist exactly when their cause commits: one
 * outbox row for all of them, so the row, its index entries and later its delivery mark are paid
 * per transaction, not per alert. The alerts come back as the outbox gives them back to the sweeper
 * (strings made storable, object keys in jsonb's order), so a line logged live and one logged by
 * the sweeper are the same bytes.
 */
export async function insertAlerts(client: pg.PoolClient, alerts: Alert[]): Promise<OutboxAlert[]> {
  if (alerts.length === 0) return [];
  const text = jsonbText(alerts);
  const { rows } = await client.query<{ id: string }>("INSERT INTO alert_outbox (alerts) VALUES ($1::jsonb) RETURNING id", [text]);
  const outboxId = rows[0]!.id;
  return (inJsonbKeyOrder(JSON.parse(text)) as Alert[]).map((alert) => ({ event: alert.event, fields: alert.fields, outboxId }));
}

/**
 * Logs alerts whose cause is committed, once. Marking their rows delivered locks them until the
 * lines are logged and the mark commits, so the stranded-alert sweeper (which skips locked rows)
 * never logs them a second time; a crash between logging and commit undoes the mark and leaves
 * them to the sweeper: repeated, never lost.
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
    // Rows another process delivered first (the sweeper) are not returned, so not logged again.
    const { rows } = await client.query<{ id: string }>(
      "UPDATE alert_outbox SET delivered_at = now() WHERE id = ANY($1::bigint[]) AND delivered_at IS NULL RETURNING id",
      [[...new Set(alerts.map((alert) => alert.outboxId))]],
    );
    const undelivered = new Set(rows.map((row) => row.id));
    for (const alert of alerts) if (undelivered.has(alert.outboxId)) emitAlert(logger, alert);
  });
}

/**
 * Delivers alerts whose process died between commit and delivery, up to `limit` outbox rows (one
 * per transaction that raised alerts) a run, oldest first, and answers how many alerts it logged.
 * Only rows older than `olderThanMs` are taken, so alerts a live process is about to deliver are
 * left to it; rows one is delivering are locked, and skipped.
 */
export async function deliverStrandedAlerts(
  pool: pg.Pool,
  logger: Logger,
  options: { olderThanMs: number; limit: number },
): Promise<number> {
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<{ id: string; alerts: Alert[] }>(
      `UPDATE alert_outbox SET delivered_at = now()
        WHERE id = ANY(ARRAY(
          SELECT id FROM alert_outbox
           WHERE delivered_at IS NULL AND created_at < now() - make_interval(secs => $1::double precision / 1000)
           ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))
        RETURNING id, alerts`,
      [options.olderThanMs, options.limit],
    );
    rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
    for (const row of rows) for (const alert of row.alerts) emitAlert(logger, alert);
    return rows.reduce((logged, row) => logged + row.alerts.length, 0);
  });
}

/**
 * Deletes up to `limit` outbox rows delivered more than `retentionMs` ago (by the database's
 * clock), oldest delivery first, in one short statement, and answers how many. An undelivered
 * row is never taken: it has no delivery time.
 */
export async function pruneDeliveredAlerts(pool: pg.Pool, options: { retentionMs: number; limit: number }): Promise<number> {
  // ARRAY(...) keeps the delete to index lookups of the rows chosen, however the planner guesses the subquery's size.
  const { rowCount } = await pool.query(
    `DELETE FROM alert_outbox
      WHERE id = ANY(ARRAY(
        SELECT id FROM alert_outbox WHERE delivered_at < now() - make_interval(secs => $1::double precision / 1000)
         ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED))`,
    [options.retentionMs, options.limit],
  );
  return rowCount ?? 0;
}
