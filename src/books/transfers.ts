import type pg from "pg";
import { withTransaction } from "../platform/db/client.js";
import type { TransferExpiration } from "../platform/db/ledger-kinds.js";
import { insertAlerts, type OutboxAlert } from "./alert-outbox.js";
import { balanceAlertsFor } from "./balance-alerts.js";
import { type Allocation, DEFAULT_PRIORITY, drawBuckets, EVERGREEN, type InflowPart, openBuckets } from "./credit-buckets.js";
import type { DebitPolicy } from "./debits.js";
import { enforceAfterPosting } from "./enforcement.js";
import { TRANSFER_CONTENT } from "./entry-hash.js";
import { postEntries } from "./post-entries.js";

export type TransferRequest = {
  fromAccountId: string;
  toAccountId: string;
  credits: bigint;
  reference: string;
  expiration: TransferExpiration;
  /** Set exactly when `expiration` is fixed. */
  expiresAt: Date | null;
  allowOverdraft: boolean;
};

export type TransferRecord = TransferRequest & { id: string; createdAt: Date };

export type TransferOutcome =
  | { outcome: "created"; transfer: TransferRecord; fromBalance: bigint; toBalance: bigint; alerts: OutboxAlert[] }
  | { outcome: "existing"; transfer: TransferRecord; fromBalance: bigint; toBalance: bigint }
  | { outcome: "conflict"; transfer: TransferRecord }
  /** Without allow_overdraft, more than the source's live credits: nothing was moved. */
  | { outcome: "insufficient_credits"; availableCredits: bigint }
  /** An account's balance would pass ±MAX_CREDITS: nothing was moved. */
  | { outcome: "out_of_range"; billingAccountId: string; balanceCredits: bigint };

type TransferRow = {
  id: string;
  from_account_id: string;
  to_account_id: string;
  reference: string;
  credits: string;
  expiration: TransferExpiration;
  expires_at: Date | null;
  allow_overdraft: boolean;
  created_at: Date;
  content: string;
};

/**
 * Moves credits between two accounts once per reference: the same request again returns the
 * first transfer; the same reference with another body is a conflict. Both accounts are locked
 * in id order (as every posting locks them), so opposite transfers queue rather than deadlock.
 * The source is drawn like any outflow; the destination's inflow pays its debt first and the
 * rest becomes buckets with the terms `expiration` names. The source's balance alerts and both
 * accounts' enforcement are those of any move (alerts queued; the caller delivers them).
 */
export async function recordTransfer(pool: pg.Pool, request: TransferRequest, policy: DebitPolicy): Promise<TransferOutcome> {
  try {
    return await withTransaction(pool, async (client) => {
      const { rows: created } = await client.query<TransferRow>(
        `INSERT INTO transfers AS t (from_account_id, to_account_id, reference, credits, expiration, expires_at, allow_overdraft)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (reference) DO NOTHING
         RETURNING t.*, ${TRANSFER_CONTENT} AS content`,
        [
          request.fromAccountId,
          request.toAccountId,
          request.reference,
          request.credits.toString(),
          request.expiration,
          request.expiresAt,
          request.allowOverdraft,
        ],
      );
      if (created.length === 0) return existingTransfer(client, request);
      const transfer = toTransferRecord(created[0]!);
      const balances = await lockAccounts(client, [transfer.fromAccountId, transfer.toAccountId]);
      const available = positive(balances.get(transfer.fromAccountId) ?? 0n);
      if (!transfer.allowOverdraft && transfer.credits > available) throw new TransferRefused({ outcome: "insufficient_credits", availableCredits: available });
      const common = { reference: transfer.reference, receiptId: null, grantId: null, sourceId: transfer.id, sourceContent: created[0]!.content };
      const { posted, refused } = await postEntries(client, [
        { ...common, billingAccountId: transfer.fromAccountId, kind: "transfer_out", amountCredits: -transfer.credits },
        { ...common, billingAccountId: transfer.toAccountId, kind: "transfer_in", amountCredits: transfer.credits },
      ]);
      if (refused.length > 0) {
        const account = refused[0]!.billingAccountId;
        throw new TransferRefused({ outcome: "out_of_range", billingAccountId: account, balanceCredits: balances.get(account) ?? 0n });
      }
      const out = posted.find((entry) => entry.kind === "transfer_out")!;
      const into = posted.find((entry) => entry.kind === "transfer_in")!;
      const drawn = await drawBuckets(client, [out]);
      await openBuckets(client, into, { source: "transfer_in", sourceId: transfer.id }, arrivingParts(transfer, drawn));
      await enforceAfterPosting(client, policy.enforcement, posted);
      const cause = { entry_kind: "transfer_out", reference: transfer.reference, transfer_id: transfer.id, transferred_credits: Number(transfer.credits) };
      // Only the source can cross a line downwards; an inflow that leaves the destination in debt is no new alert.
      const alerts = balanceAlertsFor(
        { billingAccountId: out.billingAccountId, balanceBefore: out.balanceBefore, balanceAfter: out.balanceAfter, cause },
        policy.lowBalanceThresholds,
      );
      return { outcome: "created", transfer, fromBalance: out.balanceAfter, toBalance: into.balanceAfter, alerts: await insertAlerts(client, alerts) };
    });
  } catch (error) {
    // Rolled back, so a refused transfer leaves neither a row nor an account behind it.
    if (error instanceof TransferRefused) return error.outcome;
    throw error;
  }
}

/**
 * What the destination receives, as parts with their terms: `preserve` keeps the expiry and
 * priority of each source bucket drawn, and the part no bucket covered (the overdraft) arrives
 * evergreen; `none` is all evergreen; `fixed` all expires at the transfer's expires_at.
 */
export function arrivingParts(transfer: Pick<TransferRecord, "credits" | "expiration" | "expiresAt">, drawn: readonly Allocation[]): InflowPart[] {
  if (transfer.expiration === "none") return [{ credits: transfer.credits, terms: EVERGREEN }];
  if (transfer.expiration === "fixed") return [{ credits: transfer.credits, terms: { priority: DEFAULT_PRIORITY, expiresAt: transfer.expiresAt } }];
  const parts: InflowPart[] = drawn.map((allocation) => ({ credits: allocation.credits, terms: allocation.terms }));
  const overdraft = transfer.credits - parts.reduce((sum, part) => sum + part.credits, 0n);
  if (overdraft > 0n) parts.push({ credits: overdraft, terms: EVERGREEN });
  return parts;
}

type RefusedOutcome = Extract<TransferOutcome, { outcome: "insufficient_credits" | "out_of_range" }>;

class TransferRefused extends Error {
  constructor(readonly outcome: RefusedOutcome) {
    super(`transfer refused: ${outcome.outcome}`);
  }
}

/** Locks the accounts that exist, in id order (the order postEntries takes), and returns their balances. */
async function lockAccounts(client: pg.PoolClient, ids: string[]): Promise<Map<string, bigint>> {
  const { rows } = await client.query<{ id: string; balance_credits: string }>(
    "SELECT id, balance_credits FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
    [ids],
  );
  return new Map(rows.map((row) => [row.id, BigInt(row.balance_credits)]));
}

async function existingTransfer(client: pg.PoolClient, request: TransferRequest): Promise<TransferOutcome> {
  const { rows } = await client.query<TransferRow>(`SELECT t.*, '' AS content FROM transfers t WHERE t.reference = $1`, [request.reference]);
  const transfer = toTransferRecord(rows[0]!);
  const same =
    transfer.fromAccountId === request.fromAccountId &&
    transfer.toAccountId === request.toAccountId &&
    transfer.credits === request.credits &&
    transfer.expiration === request.expiration &&
    transfer.expiresAt?.getTime() === request.expiresAt?.getTime() &&
    transfer.allowOverdraft === request.allowOverdraft;
  if (!same) return { outcome: "conflict", transfer };
  // A read, not a move: no lock, so an answer repeated never queues behind the accounts' charges.
  const { rows: accounts } = await client.query<{ id: string; balance_credits: string }>(
    "SELECT id, balance_credits FROM accounts WHERE id = ANY($1::text[])",
    [[transfer.fromAccountId, transfer.toAccountId]],
  );
  const balances = new Map(accounts.map((row) => [row.id, BigInt(row.balance_credits)]));
  return {
    outcome: "existing",
    transfer,
    fromBalance: balances.get(transfer.fromAccountId) ?? 0n,
    toBalance: balances.get(transfer.toAccountId) ?? 0n,
  };
}

function positive(value: bigint): bigint {
  return value > 0n ? value : 0n;
}

function toTransferRecord(row: TransferRow): TransferRecord {
  return {
    id: row.id,
    fromAccountId: row.from_account_id,
    toAccountId: row.to_account_id,
    reference: row.reference,
    credits: BigInt(row.credits),
    expiration: row.expiration,
    expiresAt: row.expires_at,
    allowOverdraft: row.allow_overdraft,
    createdAt: row.created_at,
  };
}
