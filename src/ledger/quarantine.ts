import { createHash } from "node:crypto";
import type pg from "pg";
import type { Alert } from "../alerts/catalog.js";
import { insertAlerts, type OutboxAlert } from "../alerts/outbox.js";
import { withTransaction } from "../db/client.js";

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
 * same reason (a retried job, a re-sent batch) is kept once and alerted once.
 */
export async function insertQuarantined(
  client: pg.PoolClient,
  entries: QuarantineEntry[],
): Promise<{ inserted: number; alerts: Alert[] }> {
  if (entries.length === 0) return { inserted: 0, alerts: [] };
  const fingerprints = entries.map(quarantineFingerprint);
  const { rows } = await client.query<{ fingerprint: string }>(
    `INSERT INTO quarantine (fingerprint, stage, reason, idempotency_key, detail, item)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
     ON CONFLICT (fingerprint) DO NOTHING
     RETURNING fingerprint`,
    [
      fingerprints,
      entries.map((entry) => entry.stage),
      entries.map((entry) => entry.reason),
      entries.map((entry) => entry.idempotencyKey),
      entries.map((entry) => JSON.stringify(entry.detail ?? null)),
      entries.map((entry) => JSON.stringify(entry.item ?? null)),
    ],
  );
  const inserted = new Set(rows.map((row) => row.fingerprint));
  const insertedCount = inserted.size;
  const alerts: Alert[] = [];
  entries.forEach((entry, index) => {
    // Deleting makes a repeat of the same item inside this batch alert only once.
    if (!inserted.delete(fingerprints[index]!)) return;
    if (entry.reason === "unpriced_model") {
      alerts.push({
        event: "inv_unpriced_model",
        fields: { idempotency_key: entry.idempotencyKey, model: entry.model ?? null, model_group: entry.modelGroup ?? null },
      });
    }
    alerts.push({
      event: "event_quarantined",
      fields: { idempotency_key: entry.idempotencyKey, reason: entry.reason, stage: entry.stage },
    });
  });
  return { inserted: insertedCount, alerts };
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
