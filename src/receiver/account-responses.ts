import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { ChargeReceipt, LedgerEntry, LiveBucket } from "../books/account-reads.js";
import { MAX_USAGE_ROWS, USAGE_GRANULARITIES, USAGE_GROUPS, type UsageRow } from "../books/usage-reads.js";
import { BUCKET_SOURCES, LEDGER_KINDS, TRANSFER_EXPIRATIONS } from "../platform/db/ledger-kinds.js";
import { RATE_STEPS } from "../usage/rate-fields.js";

/**
 * What the account API answers, one zod schema per route. Every state the ledger can be in is
 * admitted (negative balances, empty ledgers, months with nothing in them); each answer is
 * checked against its schema before it leaves, so a shape bug is a 500, never a wrong answer.
 * Each object has an `id`: the OpenAPI document names it as a component, and so do the clients
 * generated from it.
 */
// Signed: balances and charge entries go below zero. New balances, grants and charges stay
// within ±(2^53 − 1) (src/platform/db/credit-bounds.ts); a month's totals, and books written before
// the bound, can pass it and leave as bigints, written exactly (exactJson).
const credits = z.union([z.int(), z.bigint()]);
const nonNegativeCredits = z.union([z.int().nonnegative(), z.bigint().nonnegative()]);
const timestamp = z.iso.datetime();

const ledgerEntrySchema = z.object({
  id: z.string(),
  kind: z.enum(LEDGER_KINDS),
  amount_credits: credits,
  balance_before: credits,
  balance_after: credits,
  reference: z.string(),
  created_at: timestamp,
}).meta({ id: "LedgerEntry" });

export const grantResponseSchema = z.object({
  grant: z.object({
    id: z.string(),
    billing_account_id: z.string(),
    credits: z.union([z.int().positive(), z.bigint().positive()]),
    reference: z.string(),
    reason: z.string().nullable(),
    created_at: timestamp,
    expires_at: timestamp.nullable(),
    priority: z.int().min(0).max(100),
  }).meta({ id: "Grant" }),
  balance_credits: credits,
}).meta({ id: "GrantResult" });

export const debitResponseSchema = z.object({
  debit: z.object({
    id: z.string(),
    billing_account_id: z.string(),
    credits: z.union([z.int().positive(), z.bigint().positive()]),
    reference: z.string(),
    reason: z.string(),
    created_at: timestamp,
  }).meta({ id: "Debit" }),
  balance_credits: credits,
}).meta({ id: "DebitResult" });

export const transferResponseSchema = z.object({
  transfer: z.object({
    id: z.string(),
    from: z.string(),
    to: z.string(),
    credits: z.union([z.int().positive(), z.bigint().positive()]),
    reference: z.string(),
    expiration: z.enum(TRANSFER_EXPIRATIONS),
    expires_at: timestamp.nullable(),
    allow_overdraft: z.boolean(),
    created_at: timestamp,
  }).meta({ id: "Transfer" }),
  /** The source's balance and the destination's, after the transfer (now, for one answered again). */
  from_balance_credits: credits,
  to_balance_credits: credits,
}).meta({ id: "TransferResult" });

export const reversalResponseSchema = z.object({
  reversal: z.object({
    id: z.string(),
    idempotency_key: z.string().meta({ description: "the receipt given back" }),
    billing_account_id: z.string(),
    credits: z.union([z.int().positive(), z.bigint().positive()]),
    reference: z.string(),
    reason: z.string(),
    created_at: timestamp,
  }).meta({ id: "Reversal" }),
  /** What the receipt's reversals give back in all, and the account's balance. */
  reversed_credits: nonNegativeCredits,
  balance_credits: credits,
}).meta({ id: "ReversalResult" });

const liveBucketSchema = z.object({
  /** The grant's reference; for a bucket of another source, `<source>:<bucket id>`. */
  reference: z.string(),
  source: z.enum(BUCKET_SOURCES),
  remaining_credits: z.union([z.int().positive(), z.bigint().positive()]),
  expires_at: timestamp.nullable(),
  priority: z.int().min(0).max(100),
}).meta({ id: "CreditBucket" });

export const summaryResponseSchema = z
  .object({
    billing_account_id: z.string(),
    balance_credits: credits,
    /** The live buckets' credits: the balance when positive, else 0. */
    available_credits: nonNegativeCredits,
    /** What no bucket covered: minus the balance when negative, else 0. */
    debt_credits: nonNegativeCredits,
    status: z.enum(["ok", "low", "negative"]),
    /** Live buckets in consumption order (the next to be spent first), at most 100. */
    grants: z.array(liveBucketSchema),
    /** The live bucket that expires soonest; null when none expires. */
    next_expiry: liveBucketSchema.nullable(),
    recent: z.array(ledgerEntrySchema),
  })
  .refine((summary) => BigInt(summary.available_credits) - BigInt(summary.debt_credits) === BigInt(summary.balance_credits), {
    message: "available less debt is not the balance",
  })
  .meta({ id: "CreditsSummary" });

export const ledgerResponseSchema = z.object({
  billing_account_id: z.string(),
  entries: z.array(ledgerEntrySchema),
  next_cursor: z.string().nullable(),
}).meta({ id: "LedgerPage" });

export const invoiceResponseSchema = z
  .object({
    billing_account_id: z.string(),
    period: z.string().regex(/^\d{4}-\d{2}$/),
    opening_balance: credits,
    credits_granted: nonNegativeCredits,
    credits_used: nonNegativeCredits,
    receipt_count: z.int().nonnegative(),
    credits_expired: nonNegativeCredits,
    credits_debited: nonNegativeCredits,
    credits_reversed: nonNegativeCredits,
    transfers_in: nonNegativeCredits,
    transfers_out: nonNegativeCredits,
    closing_balance: credits,
    final: z.boolean(),
    final_at: timestamp,
  })
  .refine(
    (invoice) =>
      BigInt(invoice.opening_balance) +
        BigInt(invoice.credits_granted) +
        BigInt(invoice.credits_reversed) +
        BigInt(invoice.transfers_in) -
        BigInt(invoice.credits_used) -
        BigInt(invoice.credits_expired) -
        BigInt(invoice.credits_debited) -
        BigInt(invoice.transfers_out) ===
      BigInt(invoice.closing_balance),
    { message: "the invoice does not tie out" },
  )
  .meta({ id: "Invoice" });

export const receiptResponseSchema = z.object({
  idempotency_key: z.string(),
  billing_account_id: z.string(),
  /** Set when the caller named another account in spend_logs_metadata and a trusted source paid. */
  claimed_billing_account_id: z.string().nullable(),
  /** The model as reports group it: without a prefix naming the call's own provider (LiteLLM 1.81 adds one). */
  model: z.string().nullable(),
  /** The model exactly as LiteLLM logged it. */
  logged_model: z.string().nullable(),
  model_group: z.string().nullable(),
  charged_credits: nonNegativeCredits,
  /** What reversals of this charge gave back in all (0 when none). */
  reversed_credits: nonNegativeCredits,
  provider_cost_usd: z.string().regex(/^\d+(\.\d+)?$/),
  pricing_source: z.enum(["free", "cache_hit", "price_book", "reported_cost"]),
  rate_step: z.enum(RATE_STEPS).nullable(),
  price_entry: z.string().nullable(),
  pricing_reason: z.string().nullable(),
  reported_cost_usd: z.string().regex(/^\d+(\.\d+)?$/).nullable(),
  /** The margin and provider discount LiteLLM applied to its own figure (not billed here). */
  litellm_margin_usd: z.string().regex(/^\d+(\.\d+)?$/).nullable(),
  litellm_discount_usd: z.string().regex(/^\d+(\.\d+)?$/).nullable(),
  price_book_hash: z.string(),
  balance_after: credits.nullable(),
  prompt_tokens: z.int().nonnegative(),
  completion_tokens: z.int().nonnegative(),
  cache_read_tokens: z.int().nonnegative(),
  cache_write_tokens: z.int().nonnegative(),
  reasoning_tokens: z.int().nonnegative(),
  event_time: timestamp.nullable(),
  created_at: timestamp,
}).meta({ id: "Receipt" });

// Sums over many hours: exact JSON integers of any size, as an invoice's totals.
const total = nonNegativeCredits;

const usageRowSchema = z.object({
  /** The UTC hour, day or month; the first and last periods hold only what falls inside [from, to). */
  period_start: timestamp,
  group: z.string().nullable().optional().meta({
    description: "the model, key hash, team or account of the row, when grouped; null for calls that had none",
  }),
  calls: total,
  /** Of the calls: charged nothing (a free model or a cache hit), priced here, or at LiteLLM's reported cost. */
  free_calls: total,
  priced_calls: total,
  reported_calls: total,
  /** Prompt tokens, cached reads and cache writes included. */
  input_tokens: total,
  cached_tokens: total,
  cache_write_tokens: total,
  /** Completion tokens, reasoning included. */
  output_tokens: total,
  reasoning_tokens: total,
  charged_credits: total,
  priced_credits: total,
  reported_credits: total,
}).meta({ id: "UsageRow" });

export const usageResponseSchema = z.object({
  /** The account read; null when every account's usage was. */
  billing_account_id: z.string().nullable(),
  from: timestamp,
  to: timestamp,
  granularity: z.enum(USAGE_GRANULARITIES),
  group_by: z.enum(USAGE_GROUPS).nullable(),
  /** By period from the earliest; within one, by charged credits, the most first, then by group. */
  rows: z.array(usageRowSchema).max(MAX_USAGE_ROWS),
  /** Pass as `cursor`, with the same filters, for the rows that follow; null on the last page. */
  next_cursor: z.string().nullable(),
}).meta({ id: "UsagePage" });

/** Credits leave as JSON numbers, exactly: a bigint where a double could not hold the value (see exactJson). */
export function creditsJson(value: bigint): number | bigint {
  return value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER) ? value : Number(value);
}

/**
 * The account routes' serializer: each answer is checked against its route's response schema
 * (a mismatch is a 500, never a wrong answer), then written with exactJson.
 */
export function exactSerializerCompiler({ schema }: { schema: unknown }): (data: unknown) => string {
  const responseSchema = schema as z.ZodType;
  return (data) => exactJson(responseSchema.parse(data));
}

/**
 * JSON.stringify that writes a bigint as the integer it is. A bigint is first marked with a
 * token no request can know, then the quotes around the marked digits are dropped.
 */
export function exactJson(payload: unknown): string {
  const token = randomUUID();
  const text = JSON.stringify(payload, (_key, value: unknown) => (typeof value === "bigint" ? `${token}${value}` : value));
  return text.replace(new RegExp(`"${token}(-?\\d+)"`, "g"), "$1");
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
    claimed_billing_account_id: receipt.claimedBillingAccountId,
    model: receipt.canonicalModel ?? receipt.model,
    logged_model: receipt.model,
    model_group: receipt.modelGroup,
    charged_credits: creditsJson(receipt.chargedCredits),
    reversed_credits: creditsJson(receipt.reversedCredits),
    provider_cost_usd: receipt.providerCostUsd,
    pricing_source: receipt.pricingSource,
    rate_step: receipt.rateStep,
    price_entry: receipt.priceEntry,
    pricing_reason: receipt.pricingReason,
    reported_cost_usd: receipt.reportedCostUsd,
    litellm_margin_usd: receipt.litellmMarginUsd,
    litellm_discount_usd: receipt.litellmDiscountUsd,
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

export function liveBucketJson(bucket: LiveBucket) {
  return {
    reference: bucket.reference,
    source: bucket.source,
    remaining_credits: creditsJson(bucket.remainingCredits),
    expires_at: bucket.expiresAt?.toISOString() ?? null,
    priority: bucket.priority,
  };
}

export function usageRowJson(row: UsageRow, grouped: boolean) {
  return {
    period_start: row.periodStart.toISOString(),
    ...(grouped ? { group: row.group } : {}),
    calls: creditsJson(row.calls),
    free_calls: creditsJson(row.freeCalls),
    priced_calls: creditsJson(row.pricedCalls),
    reported_calls: creditsJson(row.reportedCalls),
    input_tokens: creditsJson(row.inputTokens),
    cached_tokens: creditsJson(row.cachedTokens),
    cache_write_tokens: creditsJson(row.cacheWriteTokens),
    output_tokens: creditsJson(row.outputTokens),
    reasoning_tokens: creditsJson(row.reasoningTokens),
    charged_credits: creditsJson(row.chargedCredits),
    priced_credits: creditsJson(row.pricedCredits),
    reported_credits: creditsJson(row.reportedCredits),
  };
}
