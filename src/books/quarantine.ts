import { createHash } from "node:crypto";
import type pg from "pg";
import type { Alert } from "./alert-catalog.js";
import { insertAlerts, type OutboxAlert } from "./alert-outbox.js";
import { and, eq, gt, inArray, isNull, lte, max, notInArray, sql } from "drizzle-orm";
import { drizzleOver, jsonbText, storableCopy, withTransaction } from "../platform/db/client.js";
import { quarantine } from "../platform/db/schema.js";
import { chargeUsageJobSchema, JOB_CHARGE_USAGE, JOB_QUARANTINE_ITEMS, quarantineItemsJobSchema } from "../platform/queue.js";
import type { Divergence } from "../pricing/price-usage-event.js";
import { parseUsageEvents, type RejectedItem, type UsageEvent } from "../usage/usage-event.js";
import { callTimeMs, reusedIdKey } from "./call-identity.js";
import { priceDivergenceAlert, priceDivergenceFields } from "./price-divergence-alert.js";
import type { QuarantineReason, QuarantineStage } from "./quarantine-reasons.js";

/** Why, for the operator: a sentence or the issues found, and any fields the reason adds. */
export type QuarantineDetail = ({ message: string } | { issues: unknown[] }) & Record<string, unknown>;

/**
 * What was refused: a usage event (with the divergence that held it, for `price_divergence`),
 * or an item not read as one, which is the sanitised callback item (receiver) or whatever a
 * job carried (worker), with the key it showed if any. Never prompt text.
 */
export type Refused = { event: UsageEvent; divergence?: Divergence } | { item: unknown; idempotencyKey: string | null };

export type QuarantineEntry = {
  stage: QuarantineStage;
  reason: QuarantineReason;
  idempotencyKey: string | null;
  detail: QuarantineDetail;
  /** What the row keeps and replay sends back. */
  item: unknown;
  /** The usage event refused, when the item is one: its alerts name its model and account. */
  event: UsageEvent | null;
  divergence: Divergence | null;
};

/** The one way a quarantine entry is made. */
export function quarantineEntry(stage: QuarantineStage, reason: QuarantineReason, refused: Refused, detail: QuarantineDetail): QuarantineEntry {
  if (!("event" in refused)) return { stage, reason, idempotencyKey: refused.idempotencyKey, detail, item: refused.item, event: null, divergence: null };
  const { event, divergence = null } = refused;
  return { stage, reason, idempotencyKey: event.idempotencyKey, detail, item: event, event, divergence };
}

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
  // Raw SQL: one statement for the whole batch through unnest, which drizzle's insert cannot write.
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
      entries.map((entry) => jsonbText(storedDetail(entry))),
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
        fields: { idempotency_key: entry.idempotencyKey, model: entry.event?.model ?? null, model_group: entry.event?.modelGroup ?? null },
      });
    }
    if (entry.reason === "price_divergence" && entry.event !== null && entry.divergence !== null) {
      alerts.push(priceDivergenceAlert(entry.event, entry.idempotencyKey, null, entry.divergence));
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

/** The detail as the row shows it: a divergence as its alert names it. */
function storedDetail(entry: QuarantineEntry): QuarantineDetail {
  return entry.divergence === null ? entry.detail : { ...entry.detail, divergence: priceDivergenceFields(entry.divergence) };
}

function quarantineFingerprint(entry: QuarantineEntry): string {
  return createHash("sha256")
    .update(JSON.stringify([entry.stage, entry.reason, entry.item ?? null]))
    .digest("hex");
}

/** Keeps what the receiver refused, with the alerts for it, in one transaction. */
export async function quarantineRejectedItems(pool: pg.Pool, items: RejectedItem[]): Promise<{ inserted: number; alerts: OutboxAlert[] }> {
  return withTransaction(pool, async (client) => {
    // The queue's job schema reads a reason as any text, so that jobs queued by another version
    // still parse; what the receiver and the backfill queue is a catalog reason.
    const entries = items.map(({ reason, idempotencyKey, issues, item }) =>
      quarantineEntry("receiver", reason as QuarantineReason, { item, idempotencyKey }, { issues }),
    );
    const { inserted, alerts } = await insertQuarantined(client, entries);
    return { inserted, alerts: await insertAlerts(client, alerts) };
  });
}

export type QuarantinedRow = {
  id: string;
  stage: QuarantineStage;
  /** A catalog reason, or one an older version wrote. */
  reason: string;
  idempotencyKey: string | null;
  detail: unknown;
  item: unknown;
  createdAt: Date;
  replayedAt: Date | null;
};

/** The id of the newest quarantined row ("0" with none). */
export async function newestQuarantineId(pool: pg.Pool): Promise<string> {
  const [row] = await drizzleOver(pool).select({ id: max(quarantine.id) }).from(quarantine);
  return (row?.id ?? 0n).toString();
}

/** Quarantined rows in id order (up to `throughId`), those not yet replayed unless `includeReplayed`. */
export async function listQuarantined(
  pool: pg.Pool,
  options: { reason?: string; afterId?: string; throughId?: string; limit: number; includeReplayed?: boolean; excludeReasons?: string[] },
): Promise<QuarantinedRow[]> {
  const rows = await drizzleOver(pool)
    .select()
    .from(quarantine)
    .where(
      and(
        options.reason === undefined ? undefined : eq(quarantine.reason, options.reason),
        gt(quarantine.id, BigInt(options.afterId ?? "0")),
        options.throughId === undefined ? undefined : lte(quarantine.id, BigInt(options.throughId)),
        options.includeReplayed ? undefined : isNull(quarantine.replayedAt),
        options.excludeReasons?.length ? notInArray(quarantine.reason, options.excludeReasons) : undefined,
      ),
    )
    .orderBy(quarantine.id)
    .limit(options.limit);
  return rows.map(({ fingerprint: _, id, ...row }) => ({ id: id.toString(), ...row }));
}

/**
 * Marks rows as sent back through the pipeline; a refusal on the way opens them again. Returns
 * when they were marked (the transaction's time, as PostgreSQL's text: exact to the microsecond,
 * which a Date is not).
 */
export async function markReplayed(client: pg.PoolClient, ids: string[]): Promise<string> {
  const [marked] = await drizzleOver(client)
    .update(quarantine)
    .set({ replayedAt: sql`now()` })
    .where(inArray(quarantine.id, ids.map(BigInt)))
    .returning({ sentAt: sql<string>`now()::text` });
  if (marked === undefined) throw new Error("markReplayed: none of the rows exists");
  return marked.sentAt;
}

/**
 * A usage event a replay sent, as its outcome is looked up: its key, the time of its call, its
 * JSON and when it was sent.
 */
export type SentEvent = { idempotencyKey: string; eventTime: string | null; eventJson: string; sentAt: string };

export type ReplayOutcomes = { charged: number; alreadyCharged: number; refusedAgain: number; uncharged: number };

const OUTCOMES_PER_QUERY = 1000;

/**
 * What became of events a replay sent, once their jobs are done, as the books show it: charged
 * (a receipt for the call written since it was sent: under its key, or under the key of a further
 * call under that id), already charged (a receipt from before: nothing charged now), refused
 * again (a pending quarantine row holds the very event; a pending `receipt_conflict` row says so
 * even beside a receipt), or uncharged (neither: a failed call, which is never charged).
 */
export async function replayOutcomes(pool: pg.Pool, sent: SentEvent[]): Promise<ReplayOutcomes> {
  const outcomes: ReplayOutcomes = { charged: 0, alreadyCharged: 0, refusedAgain: 0, uncharged: 0 };
  for (let start = 0; start < sent.length; start += OUTCOMES_PER_QUERY) {
    // Raw SQL: a thousand events looked up in one statement through unnest.
    const chunk = sent.slice(start, start + OUTCOMES_PER_QUERY);
    const reusedKey = (event: SentEvent) => {
      const timeMs = callTimeMs(event.eventTime);
      return timeMs === null ? null : reusedIdKey(event.idempotencyKey, timeMs);
    };
    const { rows } = await pool.query<{ outcome: keyof ReplayOutcomes; events: number }>(
      `SELECT CASE
           WHEN held.conflict THEN 'refusedAgain'
           WHEN receipt.created_at >= sent.sent_at THEN 'charged'
           WHEN receipt.created_at IS NOT NULL THEN 'alreadyCharged'
           WHEN held.pending THEN 'refusedAgain'
           ELSE 'uncharged'
         END AS outcome, count(*)::int AS events
       FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[], $4::text[]) AS sent(key, event, sent_at, reused_key)
       CROSS JOIN LATERAL (
         SELECT max(created_at) AS created_at FROM charge_receipts WHERE idempotency_key IN (sent.key, sent.reused_key)
       ) receipt
       CROSS JOIN LATERAL (
         SELECT count(*) > 0 AS pending, coalesce(bool_or(reason = 'receipt_conflict'), false) AS conflict
         FROM quarantine WHERE idempotency_key = sent.key AND replayed_at IS NULL AND item = sent.event
       ) held
       GROUP BY 1`,
      [chunk.map((event) => event.idempotencyKey), chunk.map((event) => event.eventJson), chunk.map((event) => event.sentAt), chunk.map(reusedKey)],
    );
    for (const row of rows) outcomes[row.outcome] += row.events;
  }
  return outcomes;
}

/**
 * Names the account a quarantined `no_billing_account` event should have been billed to, so
 * that a replay charges it there. Only pending worker rows of that reason can be assigned.
 */
export async function assignBillingAccount(pool: pg.Pool, quarantineId: string, billingAccountId: string): Promise<boolean> {
  const assigned = await drizzleOver(pool)
    .update(quarantine)
    .set({ item: sql`jsonb_set(${quarantine.item}, '{billingAccountId}', to_jsonb(${billingAccountId}::text))` })
    .where(
      and(
        eq(quarantine.id, BigInt(quarantineId)),
        eq(quarantine.stage, "worker"),
        eq(quarantine.reason, "no_billing_account"),
        isNull(quarantine.replayedAt),
      ),
    )
    .returning({ id: quarantine.id });
  return assigned.length === 1;
}

/** A job an operator takes out of the queue, as the books see it (nothing of BullMQ). */
export type RemovedJob = { id: string; name: string; data: unknown };

/**
 * Keeps what queued jobs carry before an operator removes them, so that `quarantine replay`
 * can send it back: a charge job's usage events as `removed_from_queue` (events this version
 * cannot read as `invalid_job_event`, as the worker would), a quarantine job's items as the
 * receiver refused them, and data no job schema reads, whole, as `invalid_job_event`. Everything
 * is committed when this returns, so the caller removes the jobs only after.
 */
export async function quarantineRemovedJobs(
  pool: pg.Pool,
  jobs: RemovedJob[],
  removedBy: string,
): Promise<{ items: number; inserted: number; alerts: OutboxAlert[] }> {
  const entries: QuarantineEntry[] = [];
  const refusedItems: RejectedItem[] = [];
  for (const job of jobs) {
    const origin = { jobId: job.id, job: job.name, removedBy };
    const charge = job.name === JOB_CHARGE_USAGE ? chargeUsageJobSchema.safeParse(job.data) : undefined;
    const refused = job.name === JOB_QUARANTINE_ITEMS ? quarantineItemsJobSchema.safeParse(job.data) : undefined;
    if (charge?.success) {
      const { valid, invalid } = parseUsageEvents(charge.data.events);
      for (const event of valid) {
        entries.push(quarantineEntry("worker", "removed_from_queue", { event }, { message: "removed from the queue by an operator", ...origin }));
      }
      for (const { item, issues } of invalid) {
        entries.push(quarantineEntry("worker", "invalid_job_event", { item, idempotencyKey: null }, { issues, ...origin }));
      }
    } else if (refused?.success) {
      refusedItems.push(...refused.data.items);
    } else {
      // A job whose data no schema reads, or whose name this version does not know, is kept whole.
      const unread = (charge ?? refused)?.error;
      const issues = unread ? unread.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`) : [`unknown job name ${job.name}`];
      entries.push(quarantineEntry("worker", "invalid_job_event", { item: job.data, idempotencyKey: null }, { issues, ...origin }));
    }
  }
  const kept = await withTransaction(pool, async (client) => {
    const { inserted, alerts } = await insertQuarantined(client, entries);
    return { inserted, alerts: await insertAlerts(client, alerts) };
  });
  const refused = refusedItems.length > 0 ? await quarantineRejectedItems(pool, refusedItems) : { inserted: 0, alerts: [] };
  return {
    items: entries.length + refusedItems.length,
    inserted: kept.inserted + refused.inserted,
    alerts: [...kept.alerts, ...refused.alerts],
  };
}
