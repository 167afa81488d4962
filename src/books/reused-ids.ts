import type pg from "pg";
import type { UsageEvent } from "../usage/usage-event.js";
import { callTimeMs, reusedIdKey, reusedIdKeysNear, sameCall } from "./call-identity.js";
import { type InsertedReceipt, insertReceipts, type PricedUsage, type ReceiptPriceBook, type ReceiptToInsert, usageFingerprint } from "./charge-receipts.js";
import { compareText } from "./post-entries.js";

/** A further call under a request id, given a receipt of its own under `key` (reusedIdKey). */
export type ReusedIdReceipt = InsertedReceipt & { usage: PricedUsage; key: string; firstEventTime: string | null };

export type RepeatedIds = { placed: ReusedIdReceipt[]; duplicates: number; conflicting: PricedUsage[] };

type Recorded = { fingerprint: string; eventTime: Date | null };

/**
 * Decides the deliveries whose request id already has a receipt (a repeat within the batch, or
 * an id charged before). The same call again is a duplicate, or a conflict when its usage
 * differs: the first receipt stands. Another call under the same id (another time, see
 * call-identity) gets a receipt of its own under reusedIdKey, once however often it arrives.
 * The ids' first receipts are locked, in key order, so that concurrent transactions decide one
 * id's further calls one after the other and never charge one call under two neighbouring keys.
 */
export async function placeRepeatedIds(client: pg.PoolClient, usages: PricedUsage[], priceBook: ReceiptPriceBook): Promise<RepeatedIds> {
  const conflicting = new Map<string, PricedUsage>();
  if (usages.length === 0) return { placed: [], duplicates: 0, conflicting: [] };
  const firsts = await recordedByKey(client, [...new Set(usages.map((usage) => usage.event.idempotencyKey))], "lock");
  const others: Array<{ usage: PricedUsage; timeMs: number }> = [];
  for (const usage of usages) {
    const first = firsts.get(usage.event.idempotencyKey);
    const timeMs = callTimeMs(usage.event.eventTime);
    if (first !== undefined && sameCall(timeOf(first), timeMs) === false) others.push({ usage, timeMs: timeMs! });
    // With no first receipt to compare with (none is expected), nothing is charged or kept.
    else if (first !== undefined && first.fingerprint !== usageFingerprint(usage.event)) conflicting.set(usageFingerprint(usage.event), usage);
  }

  // Earliest first, so that of two copies a millisecond apart in one batch the same one is kept.
  others.sort((a, b) => compareText(a.usage.event.idempotencyKey, b.usage.event.idempotencyKey) || a.timeMs - b.timeMs);
  const near = await recordedByKey(client, others.flatMap(({ usage, timeMs }) => reusedIdKeysNear(usage.event.idempotencyKey, timeMs)));
  const kept: Array<{ requestId: string; timeMs: number; fingerprint: string }> = [];
  const toInsert: ReceiptToInsert[] = [];
  for (const { usage, timeMs } of others) {
    const requestId = usage.event.idempotencyKey;
    const fingerprint = usageFingerprint(usage.event);
    const copies = [
      ...reusedIdKeysNear(requestId, timeMs).flatMap((key) => (near.has(key) ? [near.get(key)!.fingerprint] : [])),
      ...kept.filter((call) => call.requestId === requestId && sameCall(call.timeMs, timeMs)).map((call) => call.fingerprint),
    ];
    if (copies.length > 0) {
      if (!copies.includes(fingerprint)) conflicting.set(fingerprint, usage);
      continue;
    }
    kept.push({ requestId, timeMs, fingerprint });
    toInsert.push({ usage, key: reusedIdKey(requestId, timeMs) });
  }
  const inserted = await insertReceipts(client, toInsert, priceBook);
  const placed: ReusedIdReceipt[] = [];
  for (const { usage, key } of toInsert) {
    const receipt = inserted.get(key);
    // Taken by a call sent under that very text as its own id: never a second charge.
    if (receipt === undefined) conflicting.set(usageFingerprint(usage.event), usage);
    else placed.push({ ...receipt, usage, key, firstEventTime: firsts.get(usage.event.idempotencyKey)!.eventTime?.toISOString() ?? null });
  }
  return { placed, duplicates: usages.length - placed.length - conflicting.size, conflicting: [...conflicting.values()] };
}

/**
 * Of quarantined `receipt_conflict` events, which sending again could only refuse again: a
 * receipt stands for the same call with other usage, and none with theirs. The others are now
 * charged under a key of their own, or found charged already.
 */
export async function standingConflicts(pool: pg.Pool, events: UsageEvent[]): Promise<boolean[]> {
  const keysOf = (event: UsageEvent) => {
    const timeMs = callTimeMs(event.eventTime);
    return [event.idempotencyKey, ...(timeMs === null ? [] : reusedIdKeysNear(event.idempotencyKey, timeMs))];
  };
  const recorded = await recordedByKey(pool, [...new Set(events.flatMap(keysOf))]);
  return events.map((event) => {
    const first = recorded.get(event.idempotencyKey);
    const copies = [
      ...(first !== undefined && sameCall(timeOf(first), callTimeMs(event.eventTime)) !== false ? [first.fingerprint] : []),
      ...keysOf(event).slice(1).flatMap((key) => (recorded.has(key) ? [recorded.get(key)!.fingerprint] : [])),
    ];
    return copies.length > 0 && !copies.includes(usageFingerprint(event));
  });
}

function timeOf(recorded: Recorded): number | null {
  return recorded.eventTime === null ? null : recorded.eventTime.getTime();
}

async function recordedByKey(client: pg.Pool | pg.PoolClient, keys: string[], lock?: "lock"): Promise<Map<string, Recorded>> {
  if (keys.length === 0) return new Map();
  // NO KEY UPDATE: exclusive among deciders, while ledger entries may still reference the row.
  const { rows } = await client.query<{ idempotency_key: string; usage_fingerprint: string; event_time: Date | null }>(
    `SELECT idempotency_key, encode(usage_fingerprint, 'hex') AS usage_fingerprint, event_time FROM charge_receipts WHERE idempotency_key = ANY($1::text[])
     ${lock ? "ORDER BY idempotency_key FOR NO KEY UPDATE" : ""}`,
    [keys],
  );
  return new Map(rows.map((row) => [row.idempotency_key, { fingerprint: row.usage_fingerprint, eventTime: row.event_time }]));
}
