import { createHash } from "node:crypto";
import type pg from "pg";
import type { Alert } from "../alerts/catalog.js";
import { insertAlerts, type OutboxAlert } from "../alerts/outbox.js";
import { withTransaction } from "../db/client.js";
import { toDecimalString } from "../pricing/decimal.js";
import type { Charge } from "../pricing/price-usage-event.js";
import type { UsageEvent } from "../queue/contract.js";
import { type BalanceMove, balanceAlertsFor } from "./balance-alerts.js";
import { insertQuarantined, type QuarantineEntry } from "./quarantine.js";

export type PricedUsage = { event: UsageEvent & { billingAccountId: string }; charge: Charge };

export type UsageBatch = {
  charges: PricedUsage[];
  quarantines: QuarantineEntry[];
  priceBookHash: string;
  lowBalanceThresholds: readonly bigint[];
};

export type UsageBatchResult = {
  /** The calls this batch charged for the first time. */
  charged: PricedUsage[];
  duplicates: number;
  conflicts: number;
  quarantined: number;
  /** Committed, not yet delivered: the caller hands them to `deliverAlerts`. */
  alerts: OutboxAlert[];
};

/**
 * What identifies the usage behind a key, to tell a harmless redelivery from a conflict.
 * A fixed list of fields, so that a field added to events later does not make every
 * redelivery of an older event look different.
 */
export function usageFingerprint(event: UsageEvent): string {
  const fields = [
    event.idempotencyKey,
    event.billingAccountId,
    event.status,
    event.cacheHit,
    event.model,
    event.modelGroup,
    event.modelMapKey,
    event.promptTokens,
    event.completionTokens,
    event.cacheReadTokens,
    event.cacheWriteTokens,
    event.reasoningTokens,
    event.reportedCostUsd,
  ];
  return createHash("sha256").update(JSON.stringify(fields)).digest("hex");
}

/**
 * Records a batch of priced calls in one transaction: each idempotency key gets exactly one
 * receipt and one ledger entry however often it arrives, balances move with their entries
 * and may go below zero, and the alerts the charges crossed are queued in the outbox. A key
 * that comes back with other usage is kept in quarantine as a `receipt_conflict`; the first
 * receipt stands.
 *
 * Locks are taken in one order (receipts by key, then accounts by id), so concurrent batches
 * touching the same accounts serialise instead of deadlocking, and only accounts that are
 * actually charged are created.
 */
export async function recordUsageBatch(pool: pg.Pool, batch: UsageBatch): Promise<UsageBatchResult> {
  const { firsts, repeats } = splitRepeatedKeys(batch.charges);
  return withTransaction(pool, async (client) => {
    const inserted = await insertReceipts(client, firsts, batch.priceBookHash);
    const newlyCharged = firsts.filter((usage) => inserted.has(usage.event.idempotencyKey));
    const balances = await lockAccounts(client, newlyCharged.map((usage) => usage.event.billingAccountId));

    const alerts: Alert[] = [];
    const entries = newlyCharged.map((usage): BalanceMove => {
      const account = usage.event.billingAccountId;
      const balanceBefore = balances.get(account)!;
      const balanceAfter = balanceBefore - usage.charge.chargedCredits;
      balances.set(account, balanceAfter);
      const move = {
        billingAccountId: account,
        idempotencyKey: usage.event.idempotencyKey,
        receiptId: inserted.get(usage.event.idempotencyKey)!,
        chargedCredits: usage.charge.chargedCredits,
        balanceBefore,
        balanceAfter,
      };
      alerts.push(...balanceAlertsFor(move, batch.lowBalanceThresholds));
      return move;
    });
    await insertChargeEntries(client, entries);
    await storeBalances(client, new Set(entries.map((entry) => entry.billingAccountId)), balances);

    const notInserted = [...firsts.filter((usage) => !inserted.has(usage.event.idempotencyKey)), ...repeats];
    const conflicting = await findConflicts(client, notInserted);
    const quarantined = await insertQuarantined(client, [...batch.quarantines, ...conflicting.map(conflictQuarantine)]);
    alerts.push(...quarantined.alerts);
    return {
      charged: newlyCharged,
      duplicates: notInserted.length - conflicting.length,
      conflicts: conflicting.length,
      quarantined: quarantined.inserted,
      alerts: await insertAlerts(client, alerts),
    };
  });
}

function conflictQuarantine(usage: PricedUsage): QuarantineEntry {
  return {
    stage: "worker",
    reason: "receipt_conflict",
    idempotencyKey: usage.event.idempotencyKey,
    detail: { message: "this key was already charged for other usage; the first receipt stands" },
    item: usage.event,
    model: usage.event.model,
    modelGroup: usage.event.modelGroup,
  };
}

/** The first occurrence of each key, sorted by key (the receipt lock order), and the rest. */
function splitRepeatedKeys(charges: PricedUsage[]): { firsts: PricedUsage[]; repeats: PricedUsage[] } {
  const firstByKey = new Map<string, PricedUsage>();
  const repeats: PricedUsage[] = [];
  for (const usage of charges) {
    if (firstByKey.has(usage.event.idempotencyKey)) repeats.push(usage);
    else firstByKey.set(usage.event.idempotencyKey, usage);
  }
  const firsts = [...firstByKey.values()].sort((a, b) => compareText(a.event.idempotencyKey, b.event.idempotencyKey));
  return { firsts, repeats };
}

/** Creates unseen accounts at balance 0 and locks all of them, in id order. */
export async function lockAccounts(client: pg.PoolClient, accountIds: string[]): Promise<Map<string, bigint>> {
  const ids = [...new Set(accountIds)].sort(compareText);
  if (ids.length === 0) return new Map();
  await client.query("INSERT INTO accounts (id) SELECT unnest($1::text[]) ON CONFLICT (id) DO NOTHING", [ids]);
  const { rows } = await client.query<{ id: string; balance_credits: string }>(
    "SELECT id, balance_credits FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
    [ids],
  );
  return new Map(rows.map((row) => [row.id, BigInt(row.balance_credits)]));
}

async function insertReceipts(
  client: pg.PoolClient,
  usages: PricedUsage[],
  priceBookHash: string,
): Promise<Map<string, string>> {
  if (usages.length === 0) return new Map();
  const column = <T>(read: (usage: PricedUsage) => T) => usages.map(read);
  const { rows } = await client.query<{ id: string; idempotency_key: string }>(
    `INSERT INTO charge_receipts (
       idempotency_key, billing_account_id, model, model_group, pricing_source, price_entry,
       provider_cost_usd, charged_credits, prompt_tokens, completion_tokens, cache_read_tokens,
       cache_write_tokens, reasoning_tokens, usage_fingerprint, event_time, price_book_hash)
     SELECT u.*, $15 FROM unnest(
       $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::numeric[], $8::int8[],
       $9::int4[], $10::int4[], $11::int4[], $12::int4[], $13::int4[], $14::text[], $16::timestamptz[]) AS u
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING id, idempotency_key`,
    [
      column((u) => u.event.idempotencyKey),
      column((u) => u.event.billingAccountId),
      column((u) => u.event.model),
      column((u) => u.event.modelGroup),
      column((u) => u.charge.pricingSource),
      column((u) => u.charge.priceEntry),
      column((u) => toDecimalString(u.charge.providerCostUsd)),
      column((u) => u.charge.chargedCredits.toString()),
      column((u) => u.event.promptTokens),
      column((u) => u.event.completionTokens),
      column((u) => u.event.cacheReadTokens),
      column((u) => u.event.cacheWriteTokens),
      column((u) => u.event.reasoningTokens),
      column((u) => usageFingerprint(u.event)),
      priceBookHash,
      column((u) => u.event.eventTime),
    ],
  );
  return new Map(rows.map((row) => [row.idempotency_key, row.id]));
}

/** Deliveries (one per distinct usage) of keys already recorded with other usage. */
async function findConflicts(client: pg.PoolClient, usages: PricedUsage[]): Promise<PricedUsage[]> {
  if (usages.length === 0) return [];
  const { rows } = await client.query<{ idempotency_key: string; usage_fingerprint: string }>(
    "SELECT idempotency_key, usage_fingerprint FROM charge_receipts WHERE idempotency_key = ANY($1::text[])",
    [[...new Set(usages.map((usage) => usage.event.idempotencyKey))]],
  );
  const recorded = new Map(rows.map((row) => [row.idempotency_key, row.usage_fingerprint]));
  const conflicting = new Map<string, PricedUsage>();
  for (const usage of usages) {
    const fingerprint = usageFingerprint(usage.event);
    const first = recorded.get(usage.event.idempotencyKey);
    if (first !== undefined && first !== fingerprint) conflicting.set(fingerprint, usage);
  }
  return [...conflicting.values()];
}

async function insertChargeEntries(client: pg.PoolClient, entries: BalanceMove[]): Promise<void> {
  if (entries.length === 0) return;
  await client.query(
    `INSERT INTO ledger_entries (billing_account_id, kind, amount_credits, balance_before, balance_after, reference, receipt_id)
     SELECT account, 'charge', -charged, before, after, reference, receipt
     FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::int8[])
       AS e(account, charged, before, after, reference, receipt)`,
    [
      entries.map((entry) => entry.billingAccountId),
      entries.map((entry) => entry.chargedCredits.toString()),
      entries.map((entry) => entry.balanceBefore.toString()),
      entries.map((entry) => entry.balanceAfter.toString()),
      entries.map((entry) => entry.idempotencyKey),
      entries.map((entry) => entry.receiptId),
    ],
  );
}

export async function storeBalances(
  client: pg.PoolClient,
  accountIds: Iterable<string>,
  balances: ReadonlyMap<string, bigint>,
): Promise<void> {
  const ids = [...accountIds];
  if (ids.length === 0) return;
  await client.query(
    `UPDATE accounts AS a SET balance_credits = v.balance, updated_at = now()
     FROM unnest($1::text[], $2::int8[]) AS v(id, balance) WHERE a.id = v.id`,
    [ids, ids.map((id) => balances.get(id)!.toString())],
  );
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
