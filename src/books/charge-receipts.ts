import { createHash } from "node:crypto";
import type pg from "pg";
import type { Charge } from "../pricing/price-usage-event.js";
import type { UsageEvent } from "../usage/usage-event.js";
import { canonicalModel } from "../usage/model-name.js";
import { byteaHex, receiptContent } from "./entry-hash.js";
import { decimalArray, numberArray, textArray } from "./sql-arrays.js";

export type PricedUsage = { event: UsageEvent & { billingAccountId: string }; charge: Charge };

/** A call to be given a receipt under `key`: its request id, or a key derived from it (reusedIdKey). */
export type ReceiptToInsert = { usage: PricedUsage; key: string };

export type InsertedReceipt = { id: string; content: string };

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

/** The price book receipts are priced with: its hash, which their content shows, and its id in price_books, which they store. */
export type ReceiptPriceBook = { hash: string; id: number };

// By pool: ids are a database's. A row of price_books is never deleted, so an id once read stays right.
const priceBookIds = new WeakMap<pg.Pool, Map<string, number>>();

/**
 * The id of the price book with this hash, adding it to price_books the first time. Its own
 * statements, committed before any receipt names the id: inside a batch's transaction, a book
 * another batch added at the same moment could be invisible to it. Read once per process and book.
 */
export async function registerPriceBook(pool: pg.Pool, hash: string): Promise<ReceiptPriceBook> {
  const known = priceBookIds.get(pool) ?? new Map<string, number>();
  priceBookIds.set(pool, known);
  const cached = known.get(hash);
  if (cached !== undefined) return { hash, id: cached };
  await pool.query("INSERT INTO price_books (hash) VALUES ($1) ON CONFLICT (hash) DO NOTHING", [hash]);
  const { rows } = await pool.query<{ id: number }>("SELECT id FROM price_books WHERE hash = $1", [hash]);
  known.set(hash, rows[0]!.id);
  return { hash, id: rows[0]!.id };
}

/** Inserts the receipts whose key is free, in the order given; returns those inserted, by key. */
export async function insertReceipts(
  client: pg.PoolClient,
  receipts: ReceiptToInsert[],
  priceBook: ReceiptPriceBook,
): Promise<Map<string, InsertedReceipt>> {
  if (receipts.length === 0) return new Map();
  const column = <T>(read: (usage: PricedUsage) => T) => receipts.map(({ usage }) => read(usage));
  const { rows } = await client.query<{ id: string; idempotency_key: string; content: string }>(
    `INSERT INTO charge_receipts AS r (
       idempotency_key, billing_account_id, model, model_group, pricing_source, price_entry,
       provider_cost_usd, charged_credits, prompt_tokens, completion_tokens, cache_read_tokens,
       cache_write_tokens, reasoning_tokens, usage_fingerprint, event_time, claimed_billing_account_id,
       rate_step, pricing_reason, reported_cost_usd, canonical_model, litellm_margin_usd, litellm_discount_usd,
       key_hash, team_id, price_book_id)
     SELECT u.*, $15 FROM unnest(
       $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::numeric[], $8::int8[],
       $9::int4[], $10::int4[], $11::int4[], $12::int4[], $13::int4[], $14::bytea[], $16::timestamptz[], $17::text[],
       $18::text[], $19::text[], $20::numeric[], $21::text[], $22::numeric[], $23::numeric[], $24::text[], $25::text[]) AS u
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING r.id, r.idempotency_key, ${receiptContent("$26::text")} AS content`,
    [
      textArray(receipts.map(({ key }) => key)),
      textArray(column((u) => u.event.billingAccountId)),
      textArray(column((u) => u.event.model)),
      textArray(column((u) => u.event.modelGroup)),
      textArray(column((u) => u.charge.pricingSource)),
      textArray(column((u) => u.charge.priceEntry)),
      decimalArray(column((u) => u.charge.providerCostUsd)),
      numberArray(column((u) => u.charge.chargedCredits)),
      numberArray(column((u) => u.event.promptTokens)),
      numberArray(column((u) => u.event.completionTokens)),
      numberArray(column((u) => u.event.cacheReadTokens)),
      numberArray(column((u) => u.event.cacheWriteTokens)),
      numberArray(column((u) => u.event.reasoningTokens)),
      textArray(column((u) => byteaHex(usageFingerprint(u.event)))),
      priceBook.id,
      textArray(column((u) => u.event.eventTime)),
      textArray(column((u) => u.event.claimedBillingAccountId)),
      textArray(column((u) => u.charge.rateStep)),
      textArray(column(receiptReason)),
      decimalArray(column((u) => u.charge.reportedCostUsd)),
      textArray(
        column((u) => {
          const canonical = canonicalModel(u.event.model, u.event.provider);
          return canonical === u.event.model ? null : canonical;
        }),
      ),
      textArray(column((u) => u.event.litellmMarginUsd)),
      textArray(column((u) => u.event.litellmDiscountUsd)),
      textArray(column((u) => u.event.keyHash)),
      textArray(column((u) => u.event.teamId)),
      priceBook.hash,
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

export async function deleteReceipts(client: pg.PoolClient, ids: string[]): Promise<void> {
  if (ids.length > 0) await client.query("DELETE FROM charge_receipts WHERE id = ANY($1::int8[])", [ids]);
}
