import type pg from "pg";
import { withTransaction } from "../platform/db/client.js";
import { EVERGREEN, insertBuckets, liveCreditsOf, returnToBuckets } from "./credit-buckets.js";
import { enforceAfterPosting, type EnforcementPolicy } from "./enforcement.js";
import { REVERSAL_CONTENT } from "./entry-hash.js";
import { type PostedEntry, postEntries } from "./post-entries.js";

export type ReversalRequest = {
  /** The receipt's idempotency key (LiteLLM's call id). */
  idempotencyKey: string;
  reference: string;
  reason: string;
  /** The whole charge when null. */
  credits: bigint | null;
};

export type ReversalRecord = {
  id: string;
  idempotencyKey: string;
  billingAccountId: string;
  credits: bigint;
  reference: string;
  reason: string;
  createdAt: Date;
};

export type ReversalOutcome =
  | { outcome: "created" | "existing"; reversal: ReversalRecord; reversedCredits: bigint; balanceCredits: bigint }
  | { outcome: "conflict"; reversal: ReversalRecord }
  | { outcome: "unknown_receipt" }
  /** The receipt's reversals would sum past its charge: nothing was moved. */
  | { outcome: "exceeds_charge"; chargedCredits: bigint; reversedCredits: bigint }
  /** The balance would pass MAX_CREDITS: nothing was moved. */
  | { outcome: "out_of_range"; balanceCredits: bigint };

type ReceiptRow = { id: string; billing_account_id: string; charged_credits: string };
type ReversalRow = { id: string; billing_account_id: string; credits: string; reference: string; reason: string; created_at: Date; content: string };

/**
 * Gives back a charge in whole or in part, once per reference: the same request again returns the
 * first reversal; the same reference with another receipt, amount or reason is a conflict. The
 * receipt's reversals never sum past its charge. Like any inflow it pays the account's debt first;
 * the rest goes back to the buckets the charge drew that are still live, up to what each gave
 * (negative allocations), and what is left (what buckets since expired gave, and the part of the
 * charge that was debt) becomes one evergreen bucket: a refund always restores its value.
 */
export async function recordReversal(pool: pg.Pool, request: ReversalRequest, enforcement: EnforcementPolicy): Promise<ReversalOutcome> {
  try {
    return await withTransaction(pool, async (client) => {
      const { rows: receipts } = await client.query<ReceiptRow>(
        "SELECT id, billing_account_id, charged_credits FROM charge_receipts WHERE idempotency_key = $1",
        [request.idempotencyKey],
      );
      const receipt = receipts[0];
      if (receipt === undefined) return { outcome: "unknown_receipt" };
      const charged = BigInt(receipt.charged_credits);
      const credits = request.credits ?? charged;
      // A free call has nothing to give back.
      if (credits <= 0n) return { outcome: "exceeds_charge", chargedCredits: charged, reversedCredits: 0n };
      const { rows: created } = await client.query<ReversalRow>(
        `INSERT INTO reversals AS v (receipt_id, billing_account_id, reference, credits, reason) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (reference) DO NOTHING
         RETURNING v.*, ${REVERSAL_CONTENT} AS content`,
        [receipt.id, receipt.billing_account_id, request.reference, credits.toString(), request.reason],
      );
      if (created.length === 0) return existingReversal(client, request, receipt, credits);
      const reversal = toReversalRecord(created[0]!, request.idempotencyKey);
      // The account's lock first: every reversal of this receipt posts under it, so the sum read next is final.
      await client.query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", [reversal.billingAccountId]);
      const reversed = await reversedCredits(client, receipt.id);
      if (reversed > charged) {
        throw new ReversalRefused({ outcome: "exceeds_charge", chargedCredits: charged, reversedCredits: reversed - reversal.credits });
      }
      const { posted } = await postEntries(client, [
        {
          billingAccountId: reversal.billingAccountId,
          kind: "reversal",
          amountCredits: reversal.credits,
          reference: reversal.reference,
          receiptId: null,
          grantId: null,
          sourceId: reversal.id,
          sourceContent: created[0]!.content,
        },
      ]);
      const entry = posted[0];
      if (entry === undefined) throw new ReversalRefused({ outcome: "out_of_range", balanceCredits: await balanceOf(client, reversal.billingAccountId) });
      await restoreCredits(client, entry, receipt.id, reversal.id);
      await enforceAfterPosting(client, enforcement, posted);
      return { outcome: "created", reversal, reversedCredits: reversed, balanceCredits: entry.balanceAfter };
    });
  } catch (error) {
    // Rolled back, so a refused reversal leaves no row behind it.
    if (error instanceof ReversalRefused) return error.outcome;
    throw error;
  }
}

/**
 * Puts the live part of a reversal back: into the charge's buckets still live (never expired, nor
 * past their expiry), each up to what it gave net of earlier reversals, in the order the charge
 * drew them; the rest as one evergreen bucket.
 */
async function restoreCredits(client: pg.PoolClient, entry: PostedEntry, receiptId: string, reversalId: string): Promise<void> {
  const { rows } = await client.query<{ id: string; net: string; live: boolean }>(
    `SELECT b.id, sum(a.credits)::text AS net,
            (b.expired_at IS NULL AND (b.expires_at IS NULL OR b.expires_at > $2)) AS live
     FROM bucket_allocations a JOIN credit_buckets b ON b.id = a.bucket_id
     WHERE a.ledger_entry_id IN (SELECT id FROM ledger_entries WHERE receipt_id = $1 AND kind = 'charge'
                                 UNION ALL
                                 SELECT l.id FROM ledger_entries l JOIN reversals v ON v.id = l.source_id
                                 WHERE l.kind = 'reversal' AND v.receipt_id = $1)
     GROUP BY b.id ORDER BY min(b.priority), min(b.expires_at), min(b.created_at), b.id`,
    [receiptId, entry.postedAt],
  );
  let left = liveCreditsOf(entry);
  const returns: Array<{ bucketId: string; credits: bigint }> = [];
  for (const bucket of rows) {
    const net = BigInt(bucket.net);
    if (left === 0n) break;
    if (!bucket.live || net <= 0n) continue;
    const credits = left < net ? left : net;
    returns.push({ bucketId: bucket.id, credits });
    left -= credits;
  }
  await returnToBuckets(client, entry, returns);
  await insertBuckets(client, entry, { source: "reversal", sourceId: reversalId }, [{ credits: left, terms: EVERGREEN }]);
}

class ReversalRefused extends Error {
  constructor(readonly outcome: Extract<ReversalOutcome, { outcome: "exceeds_charge" | "out_of_range" }>) {
    super(`reversal refused: ${outcome.outcome}`);
  }
}

async function existingReversal(client: pg.PoolClient, request: ReversalRequest, receipt: ReceiptRow, credits: bigint): Promise<ReversalOutcome> {
  const { rows } = await client.query<ReversalRow & { receipt_id: string; idempotency_key: string }>(
    `SELECT v.*, r.idempotency_key, '' AS content FROM reversals v JOIN charge_receipts r ON r.id = v.receipt_id WHERE v.reference = $1`,
    [request.reference],
  );
  const row = rows[0]!;
  const reversal = toReversalRecord(row, row.idempotency_key);
  const same = row.receipt_id === receipt.id && reversal.credits === credits && reversal.reason === request.reason;
  if (!same) return { outcome: "conflict", reversal };
  return {
    outcome: "existing",
    reversal,
    reversedCredits: await reversedCredits(client, receipt.id),
    balanceCredits: await balanceOf(client, reversal.billingAccountId),
  };
}

async function reversedCredits(client: pg.PoolClient, receiptId: string): Promise<bigint> {
  const { rows } = await client.query<{ total: string }>("SELECT coalesce(sum(credits), 0)::text AS total FROM reversals WHERE receipt_id = $1", [receiptId]);
  return BigInt(rows[0]!.total);
}

async function balanceOf(client: pg.PoolClient, billingAccountId: string): Promise<bigint> {
  const { rows } = await client.query<{ balance_credits: string }>("SELECT balance_credits FROM accounts WHERE id = $1", [billingAccountId]);
  return BigInt(rows[0]?.balance_credits ?? 0);
}

function toReversalRecord(row: ReversalRow, idempotencyKey: string): ReversalRecord {
  return {
    id: row.id,
    idempotencyKey,
    billingAccountId: row.billing_account_id,
    credits: BigInt(row.credits),
    reference: row.reference,
    reason: row.reason,
    createdAt: row.created_at,
  };
}
