import { createHash } from "node:crypto";
import type pg from "pg";
import type { Alert } from "./alert-catalog.js";
import { insertAlerts, type OutboxAlert } from "./alert-outbox.js";
import { withTransaction } from "../platform/db/client.js";
import { toDecimalString } from "../pricing/decimal.js";
import type { Charge } from "../pricing/price-usage-event.js";
import { priceDivergenceFields } from "./price-divergence-alert.js";
import { isLitellmKeyHash, type UsageEvent } from "../usage/usage-event.js";
import { canonicalModel } from "../usage/model-name.js";
import { type BalanceMove, balanceAlertsFor } from "./balance-alerts.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { RECEIPT_CONTENT } from "./entry-hash.js";
import { compareText, type Posting, postEntries } from "./post-entries.js";
import { insertQuarantined, type QuarantineEntry } from "./quarantine.js";
import { enforceAfterPosting, type PaidBy } from "./enforcement.js";
import type { EnforcementPolicy } from "../platform/config.js";

export type PricedUsage = { event: UsageEvent & { billingAccountId: string }; charge: Charge };

export type UsageBatch = {
  charges: PricedUsage[];
  quarantines: QuarantineEntry[];
  priceBookHash: string;
  lowBalanceThresholds: readonly bigint[];
  enforcement: EnforcementPolicy;
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
 * actually charged are created. Each account is moved once per batch, by the batch's total.
 */
export async function recordUsageBatch(pool: pg.Pool, batch: UsageBatch): Promise<UsageBatchResult> {
  // A single charge JSON cannot carry exactly is never recorded; it waits in quarantine.
  const oversized = batch.charges.filter((usage) => usage.charge.chargedCredits > MAX_CREDITS);
  const { firsts, repeats } = splitRepeatedKeys(batch.charges.filter((usage) => usage.charge.chargedCredits <= MAX_CREDITS));
  return withTransaction(pool, async (client) => {
    const inserted = await insertReceipts(client, firsts, batch.priceBookHash);
    const { posted, refused } = await postEntries(
      client,
      firsts
        .filter((usage) => inserted.has(usage.event.idempotencyKey))
        .map((usage): Posting => ({
          billingAccountId: usage.event.billingAccountId,
          kind: "charge",
          amountCredits: -usage.charge.chargedCredits,
          reference: usage.event.idempotencyKey,
          receiptId: inserted.get(usage.event.idempotencyKey)!.id,
          grantId: null,
          sourceContent: inserted.get(usage.event.idempotencyKey)!.content,
        })),
    );
    // A charge that would take its balance past the bound keeps no receipt: it waits in quarantine.
    const refusedKeys = new Set(refused.map((posting) => posting.reference));
    await deleteReceipts(client, refused.map((posting) => posting.receiptId!));
    const usageByKey = new Map(firsts.map((usage) => [usage.event.idempotencyKey, usage]));

    const alerts: Alert[] = [];
    for (const entry of posted) {
      const usage = usageByKey.get(entry.reference)!;
      const move: BalanceMove = {
        billingAccountId: entry.billingAccountId,
        idempotencyKey: entry.reference,
        receiptId: entry.receiptId!,
        chargedCredits: usage.charge.chargedCredits,
        balanceBefore: entry.balanceBefore,
        balanceAfter: entry.balanceAfter,
      };
      alerts.push(...balanceAlertsFor(move, batch.lowBalanceThresholds));
      if (usage.charge.divergence) alerts.push(divergenceAlert(usage, move.chargedCredits));
    }

    await enforceAfterPosting(client, batch.enforcement, posted, posted.flatMap((entry) => paidBy(usageByKey.get(entry.reference)!.event)));

    const notInserted = [...firsts.filter((usage) => !inserted.has(usage.event.idempotencyKey)), ...repeats];
    const conflicting = await findConflicts(client, notInserted);
    const quarantined = await insertQuarantined(client, [
      ...batch.quarantines,
      ...conflicting.map(conflictQuarantine),
      ...oversized.map((usage) => outOfRangeQuarantine(usage, "charge_out_of_range", "the charge is beyond what the books hold (2^53 − 1 credits)")),
      ...firsts
        .filter((usage) => refusedKeys.has(usage.event.idempotencyKey))
        .map((usage) => outOfRangeQuarantine(usage, "balance_out_of_range", "the charge would take the balance below −(2^53 − 1) credits")),
    ]);
    alerts.push(...quarantined.alerts);
    return {
      charged: posted.map((entry) => usageByKey.get(entry.reference)!),
      duplicates: notInserted.length - conflicting.length,
      conflicts: conflicting.length,
      quarantined: quarantined.inserted,
      alerts: await insertAlerts(client, alerts),
    };
  });
}

function paidBy(event: PricedUsage["event"]): PaidBy[] {
  // Events carry who paid only where enforcement is on; the rest cost nothing here.
  if (event.keyHash === undefined && event.teamId === undefined) return [];
  const usedAt = event.eventTime === null ? new Date() : new Date(event.eventTime);
  const paid: PaidBy[] = [];
  // Events queued before keys were checked at the edge may carry one LiteLLM would refuse.
  if (event.keyHash !== undefined && isLitellmKeyHash(event.keyHash)) paid.push({ billingAccountId: event.billingAccountId, kind: "key", principal: event.keyHash, usedAt });
  if (event.teamId !== undefined) paid.push({ billingAccountId: event.billingAccountId, kind: "team", principal: event.teamId, usedAt });
  return paid;
}

function outOfRangeQuarantine(usage: PricedUsage, reason: string, message: string): QuarantineEntry {
  return {
    stage: "worker",
    reason,
    idempotencyKey: usage.event.idempotencyKey,
    detail: { message, charged_credits: usage.charge.chargedCredits.toString() },
    item: usage.event,
    model: usage.event.model,
    modelGroup: usage.event.modelGroup,
  };
}

async function deleteReceipts(client: pg.PoolClient, ids: string[]): Promise<void> {
  if (ids.length > 0) await client.query("DELETE FROM charge_receipts WHERE id = ANY($1::int8[])", [ids]);
}

/** Once per receipt: a charge whose rates and LiteLLM's own figure disagree by a credit or more. */
function divergenceAlert(usage: PricedUsage, chargedCredits: bigint): Alert {
  return {
    event: "inv_price_divergence",
    fields: {
      idempotency_key: usage.event.idempotencyKey,
      billing_account_id: usage.event.billingAccountId,
      model: usage.event.model,
      charged_credits: Number(chargedCredits),
      ...priceDivergenceFields(usage.charge.divergence!),
    },
  };
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

async function insertReceipts(
  client: pg.PoolClient,
  usages: PricedUsage[],
  priceBookHash: string,
): Promise<Map<string, { id: string; content: string }>> {
  if (usages.length === 0) return new Map();
  const column = <T>(read: (usage: PricedUsage) => T) => usages.map(read);
  const { rows } = await client.query<{ id: string; idempotency_key: string; content: string }>(
    `INSERT INTO charge_receipts AS r (
       idempotency_key, billing_account_id, model, model_group, pricing_source, price_entry,
       provider_cost_usd, charged_credits, prompt_tokens, completion_tokens, cache_read_tokens,
       cache_write_tokens, reasoning_tokens, usage_fingerprint, event_time, claimed_billing_account_id,
       rate_step, pricing_reason, reported_cost_usd, canonical_model, litellm_margin_usd, litellm_discount_usd,
       price_book_hash)
     SELECT u.*, $15 FROM unnest(
       $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::numeric[], $8::int8[],
       $9::int4[], $10::int4[], $11::int4[], $12::int4[], $13::int4[], $14::text[], $16::timestamptz[], $17::text[],
       $18::text[], $19::text[], $20::numeric[], $21::text[], $22::numeric[], $23::numeric[]) AS u
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING r.id, r.idempotency_key, ${RECEIPT_CONTENT} AS content`,
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
      column((u) => u.event.claimedBillingAccountId ?? null),
      column((u) => u.charge.rateStep),
      column(receiptReason),
      column((u) => (u.charge.reportedCostUsd === null ? null : toDecimalString(u.charge.reportedCostUsd))),
      column((u) => {
        const canonical = canonicalModel(u.event.model, u.event.provider);
        return canonical === u.event.model ? null : canonical;
      }),
      column((u) => u.event.litellmMarginUsd ?? null),
      column((u) => u.event.litellmDiscountUsd ?? null),
    ],
  );
  return new Map(rows.map((row) => [row.idempotency_key, { id: row.id, content: row.content }]));
}

/**
 * What a receipt says of a backfilled call LiteLLM kept no service tier for (UsageEvent's
 * tierUnknown): in pricing_reason, which the receipt's hash covers and the receipt API shows.
 */
export const TIER_ASSUMED_REASON = "tier_assumed: LiteLLM kept no service tier for this call; priced at the standard tier";

function receiptReason(usage: PricedUsage): string | null {
  if (usage.event.tierUnknown !== true) return usage.charge.reason;
  return usage.charge.reason === null ? TIER_ASSUMED_REASON : `${usage.charge.reason}; ${TIER_ASSUMED_REASON}`;
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
