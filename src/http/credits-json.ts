import type { ChargeReceipt, LedgerEntry } from "../ledger/account-reads.js";

/** Credits leave as JSON numbers; a value JSON cannot carry exactly is a bug, not a rounding. */
export function creditsJson(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new RangeError(`credit amount ${value} is beyond what JSON numbers hold exactly`);
  }
  return Number(value);
}

export function ledgerEntryJson(entry: LedgerEntry) {
  return {
    id: entry.id.toString(),
    kind: entry.kind,
    amount_credits: creditsJson(entry.amountCredits),
    balance_before: creditsJson(entry.balanceBefore),
    balance_after: creditsJson(entry.balanceAfter),
    reference: entry.reference,
    created_at: entry.createdAt.toISOString(),
  };
}

export function receiptJson(receipt: ChargeReceipt) {
  return {
    idempotency_key: receipt.idempotencyKey,
    billing_account_id: receipt.billingAccountId,
    model: receipt.model,
    model_group: receipt.modelGroup,
    charged_credits: creditsJson(receipt.chargedCredits),
    provider_cost_usd: receipt.providerCostUsd,
    pricing_source: receipt.pricingSource,
    price_entry: receipt.priceEntry,
    price_book_hash: receipt.priceBookHash,
    balance_after: receipt.balanceAfter === null ? null : creditsJson(receipt.balanceAfter),
    prompt_tokens: receipt.promptTokens,
    completion_tokens: receipt.completionTokens,
    cache_read_tokens: receipt.cacheReadTokens,
    cache_write_tokens: receipt.cacheWriteTokens,
    reasoning_tokens: receipt.reasoningTokens,
    event_time: receipt.eventTime?.toISOString() ?? null,
    created_at: receipt.createdAt.toISOString(),
  };
}
