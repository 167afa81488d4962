import { createHash } from "node:crypto";
import type pg from "pg";
import type { Alert } from "../alerts/catalog.js";
import { insertAlerts, type OutboxAlert } from "../alerts/outbox.js";
import { jsonbText, storableCopy, withTransaction } from "../db/client.js";

export type QuarantineEntry = {
  stage: "receiver" | "worker";
  reason: string;
  idempotencyKey: string | null;
  /** Why, for the operator: zod issues or a sentence. */
  detail: unknown;
  /** The sanitised callback item (receiver) or the usage event (worker); never prompt text. */
  item: unknown;
  model?: string | null;
  modelGroup?: string | null;
};

/**
 * Keeps refused items inside the caller's transaction. The same item refused again for the
 * same reason (a retried job, a re-sent batch) is kept once and alerted once; an item that a
 * replay sent back and that is refused again is opened again, with a new alert.
 */
export async function insertQuarantined(
  client: pg.PoolClient,
  quarantined: QuarantineEntry[],
): Promise<{ inserted: number; alerts: Alert[] }> {
  if (quarantined.length === 0) return { inserted: 0, alerts: [] };
  // One row per fingerprint (ON CONFLICT DO UPDATE may not touch a row twice in one
  // statement), in fingerprint order so concurrent upserts lock rows in one order.
  const byFingerprint = new Map(quarantined.map((entry) => [quarantineFingerprint(entry), entry]));
  const fingerprints = [...byFingerprint.keys()].sort();
  const entries = fingerprints.map((fingerprint) => byFingerprint.get(fingerprint)!);
  const { rows } = await client.query<{ fingerprint: string }>(
    `INSERT INTO quarantine (fingerprint, stage, reason, idempotency_key, detail, item)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
     ON CONFLICT (fingerprint) DO UPDATE SET replayed_at = NULL, detail = EXCLUDED.detail
       WHERE quarantine.replayed_at IS NOT NULL
     RETURNING fingerprint`,
    [
      fingerprints,
      entries.map((entry) => entry.stage),
      entries.map((entry) => entry.reason),
      entries.map((entry) => (entry.idempotencyKey === null ? null : storableCopy(entry.idempotencyKey))),
      entries.map((entry) => jsonbText(entry.detail)),
      entries.map((entry) => jsonbText(entry.item)),
    ],
  );
  const inserted = new Set(rows.map((row) => row.fingerprint));
  const alerts: Alert[] = [];
  entries.forEach((entry, index) => {
    if (!inserted.has(fingerprints[index]!)) return;
    if (entry.reason === "unpriced_model") {
      alerts.push({
        event: "inv_unpriced_model",
        fields: { idempotency_key: entry.idempotencyKey, model: entry.model ?? null, model_group: entry.modelGroup ?? null },
      });
    }
    if (entry.reason === "receipt_conflict") {
      alerts.push({ event: "receipt_conflict", fields: { idempotency_key: entry.idempotencyKey } });
    }
    alerts.push({
      event: "event_quarantined",
      fields: { idempotency_key: entry.idempotencyKey, reason: entry.reason, stage: entry.stage },
    });
  });
  return { inserted: inserted.size, alerts };
}

function quarantineFingerprint(entry: QuarantineEntry): string {
  return createHash("sha256")
    .update(JSON.stringify([entry.stage, entry.reason, entry.item ?? null]))
    .digest("hex");
}

/** Keeps what the receiver refused, with the alerts for it, in one transaction. */
export async function quarantineRejectedItems(
  pool: pg.Pool,
  items: Array<{ reason: string; idempotencyKey: string | null; issues: unknown[]; item: unknown }>,
): Promise<{ inserted: number; alerts: OutboxAlert[] }> {
  return withTransaction(pool, async (client) => {
    const entries = items.map(
      (item): QuarantineEntry => ({
        stage: "receiver",
        reason: item.reason,
        idempotencyKey: item.idempotencyKey,
        detail: { issues: item.issues },
        item: item.item,
      }),
    );
    const { inserted, alerts } = await insertQuarantined(client, entries);
    return { inserted, alerts: await insertAlerts(client, alerts) };
  });
}

export type QuarantinedRow = {
  id: string;
  stage: "receiver" | "worker";
  reason: string;
  idempotencyKey: string | null;
  detail: unknown;
  item: unknown;
  createdAt: Date;
  replayedAt: Date | null;
};

/** Quarantined rows in id order, those not yet replayed unless `includeReplayed`. */
export async function listQuarantined(
  pool: pg.Pool,
  options: { reason?: string; afterId?: string; limit: number; includeReplayed?: boolean; excludeReasons?: string[] },
): Promise<QuarantinedRow[]> {
  const { rows } = await pool.query<{
    id: string;
    stage: "receiver" | "worker";
    reason: string;
    idempotency_key: string | null;
    detail: unknown;
    item: unknown;
    created_at: Date;
    replayed_at: Date | null;
  }>(
    `SELECT id, stage, reason, idempotency_key, detail, item, created_at, replayed_at FROM quarantine
     WHERE ($1::text IS NULL OR reason = $1) AND id > $2 AND ($3 OR replayed_at IS NULL) AND NOT reason = ANY($5::text[])
     ORDER BY id LIMIT $4`,
    [options.reason ?? null, options.afterId ?? "0", options.includeReplayed ?? false, options.limit, options.excludeReasons ?? []],
  );
  return rows.map((row) => ({
    id: row.id,
    stage: row.stage,
    reason: row.reason,
    idempotencyKey: row.idempotency_key,
    detail: row.detail,
    item: row.item,
    createdAt: row.created_at,
    replayedAt: row.replayed_at,
  }));
}

/** Marks rows as sent back through the pipeline; a refusal on the way opens them again. */
export async function markReplayed(client: pg.PoolClient, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await client.query("UPDATE quarantine SET replayed_at = now() WHERE id = ANY($1::bigint[])", [ids]);
}

/**
 * Names the account a quarantined `no_billing_account` event should have been billed to, so
 * that a replay charges it there. Only pending worker rows of that reason can be assigned.
 */
export async function assignBillingAccount(pool: pg.Pool, quarantineId: string, billingAccountId: string): Promise<boolean> {
  const { rowCount } = await pool.query(
    `UPDATE quarantine SET item = jsonb_set(item, '{billingAccountId}', to_jsonb($2::text))
     WHERE id = $1 AND stage = 'worker' AND reason = 'no_billing_account' AND replayed_at IS NULL`,
    [quarantineId, billingAccountId],
  );
  return rowCount === 1;
}
