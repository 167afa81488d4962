import type pg from "pg";
import type { Alert } from "./alert-catalog.js";
import { insertAlerts, type OutboxAlert } from "./alert-outbox.js";
import { withTransaction } from "../platform/db/client.js";
import { priceDivergenceAlert } from "./price-divergence-alert.js";
import { isLitellmKeyHash } from "../usage/usage-event.js";
import { type BalanceMove, balanceAlertsFor } from "./balance-alerts.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { deleteReceipts, insertReceipts, type PricedUsage, registerPriceBook } from "./charge-receipts.js";
import { compareText, type Posting, postEntries } from "./post-entries.js";
import { drawBuckets } from "./credit-buckets.js";
import { insertQuarantined, type QuarantineEntry, quarantineEntry } from "./quarantine.js";
import type { QuarantineReason } from "./quarantine-reasons.js";
import { enforceAfterPosting, type EnforcementPolicy, type PaidBy } from "./enforcement.js";
import { placeRepeatedIds, type ReusedIdReceipt } from "./reused-ids.js";

export type { PricedUsage } from "./charge-receipts.js";

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
  /** Committed, not yet delivered: the caller hands them to `deliverCommittedAlerts`. */
  alerts: OutboxAlert[];
};

/**
 * Records a batch of priced calls in one transaction: each call gets exactly one receipt and
 * one ledger entry however often it arrives, balances move with their entries and may go below
 * zero (each charge drawing from its account's live buckets first), and the alerts the charges crossed are queued in the outbox. A call's receipt is keyed
 * by its request id; another call under an id already charged gets a key of its own
 * (placeRepeatedIds); the same call back with other usage is kept in quarantine as a
 * `receipt_conflict`, and the first receipt stands.
 *
 * Locks are taken in one order (receipts by key, then accounts by id), so concurrent batches
 * touching the same accounts serialise instead of deadlocking, and only accounts that are
 * actually charged are created. Each account is moved once per batch, by the batch's total.
 */
export async function recordUsageBatch(pool: pg.Pool, batch: UsageBatch): Promise<UsageBatchResult> {
  // A single charge JSON cannot carry exactly is never recorded; it waits in quarantine.
  const oversized = batch.charges.filter((usage) => usage.charge.chargedCredits > MAX_CREDITS);
  const { firsts, repeats } = splitRepeatedKeys(batch.charges.filter((usage) => usage.charge.chargedCredits <= MAX_CREDITS));
  const priceBook = await registerPriceBook(pool, batch.priceBookHash);
  return withTransaction(pool, async (client) => {
    const inserted = await insertReceipts(client, firsts.map((usage) => ({ usage, key: usage.event.idempotencyKey })), priceBook);
    const repeated = await placeRepeatedIds(
      client,
      [...firsts.filter((usage) => !inserted.has(usage.event.idempotencyKey)), ...repeats],
      priceBook,
    );
    const receipts = [
      ...firsts.flatMap((usage) => {
        const receipt = inserted.get(usage.event.idempotencyKey);
        return receipt === undefined ? [] : [{ ...receipt, usage, key: usage.event.idempotencyKey }];
      }),
      ...repeated.placed,
    ];
    const receiptByKey = new Map(receipts.map((receipt) => [receipt.key, receipt]));
    const { posted, refused } = await postEntries(
      client,
      receipts.map((receipt): Posting => ({
        billingAccountId: receipt.usage.event.billingAccountId,
        kind: "charge",
        amountCredits: -receipt.usage.charge.chargedCredits,
        reference: receipt.key,
        receiptId: receipt.id,
        grantId: null,
        sourceId: null,
        sourceContent: receipt.content,
      })),
    );
    await drawBuckets(client, posted);
    // A charge that would take its balance past the bound keeps no receipt: it waits in quarantine.
    await deleteReceipts(client, refused.map((posting) => posting.receiptId!));

    const alerts: Alert[] = [];
    for (const entry of posted) {
      const { usage } = receiptByKey.get(entry.reference)!;
      const move: BalanceMove = {
        billingAccountId: entry.billingAccountId,
        balanceBefore: entry.balanceBefore,
        balanceAfter: entry.balanceAfter,
        cause: { idempotency_key: entry.reference, receipt_id: entry.receiptId!, charged_credits: Number(usage.charge.chargedCredits) },
      };
      alerts.push(...balanceAlertsFor(move, batch.lowBalanceThresholds));
      // Once per receipt.
      if (usage.charge.divergence) alerts.push(priceDivergenceAlert(usage.event, entry.reference, usage.charge.chargedCredits, usage.charge.divergence));
    }
    // Once per further call: its receipt is written once, however often the call arrives.
    const postedKeys = new Set(posted.map((entry) => entry.reference));
    for (const receipt of repeated.placed.filter((placed) => postedKeys.has(placed.key))) alerts.push(reusedIdAlert(receipt));

    // Who paid is recorded only while enforcing: on every charge it is a write per batch.
    const enforcing = batch.enforcement.blocks.length > 0;
    const payers = enforcing ? posted.flatMap((entry) => paidBy(receiptByKey.get(entry.reference)!.usage.event)) : [];
    await enforceAfterPosting(client, batch.enforcement, posted, payers);

    const quarantined = await insertQuarantined(client, [
      ...batch.quarantines,
      ...repeated.conflicting.map(conflictQuarantine),
      ...oversized.map((usage) => outOfRangeQuarantine(usage, "charge_out_of_range", "the charge is beyond what the books hold (2^53 − 1 credits)")),
      ...refused.map((posting) =>
        outOfRangeQuarantine(receiptByKey.get(posting.reference)!.usage, "balance_out_of_range", "the charge would take the balance below −(2^53 − 1) credits"),
      ),
    ]);
    alerts.push(...quarantined.alerts);
    return {
      charged: posted.map((entry) => receiptByKey.get(entry.reference)!.usage),
      duplicates: repeated.duplicates,
      conflicts: repeated.conflicting.length,
      quarantined: quarantined.inserted,
      alerts: await insertAlerts(client, alerts),
    };
  });
}

function paidBy(event: PricedUsage["event"]): PaidBy[] {
  const usedAt = event.eventTime === null ? new Date() : new Date(event.eventTime);
  const paid: PaidBy[] = [];
  // Events queued before keys were checked at the edge may carry one LiteLLM would refuse.
  if (event.keyHash !== undefined && isLitellmKeyHash(event.keyHash)) paid.push({ billingAccountId: event.billingAccountId, kind: "key", principal: event.keyHash, usedAt });
  if (event.teamId !== undefined) paid.push({ billingAccountId: event.billingAccountId, kind: "team", principal: event.teamId, usedAt });
  return paid;
}

function outOfRangeQuarantine(usage: PricedUsage, reason: QuarantineReason, message: string): QuarantineEntry {
  return quarantineEntry("worker", reason, { event: usage.event }, { message, charged_credits: usage.charge.chargedCredits.toString() });
}

function reusedIdAlert(receipt: ReusedIdReceipt): Alert {
  return {
    event: "response_id_reused",
    fields: {
      idempotency_key: receipt.key,
      request_id: receipt.usage.event.idempotencyKey,
      billing_account_id: receipt.usage.event.billingAccountId,
      event_time: receipt.usage.event.eventTime,
      first_event_time: receipt.firstEventTime,
      charged_credits: Number(receipt.usage.charge.chargedCredits),
    },
  };
}

function conflictQuarantine(usage: PricedUsage): QuarantineEntry {
  return quarantineEntry("worker", "receipt_conflict", { event: usage.event }, {
    message: "this call (its request id and time) was already charged for other usage; the first receipt stands",
  });
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
