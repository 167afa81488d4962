import type pg from "pg";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { withTransaction } from "../platform/db/client.js";
import { insertAlerts, type OutboxAlert } from "./alert-outbox.js";
import { balanceAlertsFor } from "./balance-alerts.js";
import { drawBuckets } from "./credit-buckets.js";
import { enforceAfterPosting, type EnforcementPolicy } from "./enforcement.js";
import { DEBIT_CONTENT } from "./entry-hash.js";
import { postEntries } from "./post-entries.js";

export type DebitRequest = { billingAccountId: string; credits: bigint; reference: string; reason: string };

export type DebitRecord = { id: string; billingAccountId: string; credits: bigint; reference: string; reason: string; createdAt: Date };

export type DebitOutcome =
  | { outcome: "created"; debit: DebitRecord; balanceCredits: bigint; alerts: OutboxAlert[] }
  | { outcome: "existing"; debit: DebitRecord; balanceCredits: bigint }
  | { outcome: "conflict"; debit: DebitRecord }
  /** The balance would pass −MAX_CREDITS: nothing was committed. */
  | { outcome: "out_of_range"; balanceCredits: bigint };

export type DebitPolicy = { lowBalanceThresholds: readonly bigint[]; enforcement: EnforcementPolicy };

type DebitRow = { id: string; billing_account_id: string; credits: string; reference: string; reason: string; created_at: Date; content: string };

/**
 * Posts a charge that is not a model call, once per reference: the same request again returns
 * the first debit; the same reference with another account, amount or reason is a conflict. It
 * draws from live buckets like a usage charge and is never refused for lack of credit: what they
 * do not cover is debt. Its balance alerts (queued; the caller delivers them) and enforcement
 * are a usage charge's.
 */
export async function recordDebit(pool: pg.Pool, request: DebitRequest, policy: DebitPolicy): Promise<DebitOutcome> {
  try {
    return await withTransaction(pool, async (client) => {
      const { rows: created } = await client.query<DebitRow>(
        `INSERT INTO debits AS d (billing_account_id, reference, credits, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (reference) DO NOTHING
         RETURNING d.*, ${DEBIT_CONTENT} AS content`,
        [request.billingAccountId, request.reference, request.credits.toString(), request.reason],
      );
      if (created.length === 0) return existingDebit(client, request);
      const debit = toDebitRecord(created[0]!);
      const { posted } = await postEntries(client, [
        {
          billingAccountId: debit.billingAccountId,
          kind: "debit",
          amountCredits: -debit.credits,
          reference: debit.reference,
          receiptId: null,
          grantId: null,
          sourceId: debit.id,
          sourceContent: created[0]!.content,
        },
      ]);
      const entry = posted[0];
      if (entry === undefined) throw new DebitOutOfRange(await balanceOf(client, debit.billingAccountId));
      await drawBuckets(client, posted);
      await enforceAfterPosting(client, policy.enforcement, posted);
      const cause = { entry_kind: "debit", reference: debit.reference, debit_id: debit.id, debited_credits: Number(debit.credits) };
      const alerts = balanceAlertsFor(
        { billingAccountId: entry.billingAccountId, balanceBefore: entry.balanceBefore, balanceAfter: entry.balanceAfter, cause },
        policy.lowBalanceThresholds,
      );
      return { outcome: "created", debit, balanceCredits: entry.balanceAfter, alerts: await insertAlerts(client, alerts) };
    });
  } catch (error) {
    // Rolled back, so a refused debit leaves no account behind it.
    if (error instanceof DebitOutOfRange) return { outcome: "out_of_range", balanceCredits: error.balanceCredits };
    throw error;
  }
}

class DebitOutOfRange extends Error {
  constructor(readonly balanceCredits: bigint) {
    super(`the debit would take the balance below -${MAX_CREDITS} credits`);
  }
}

async function existingDebit(client: pg.PoolClient, request: DebitRequest): Promise<DebitOutcome> {
  const { rows } = await client.query<DebitRow>(`SELECT d.*, '' AS content FROM debits d WHERE d.reference = $1`, [request.reference]);
  const debit = toDebitRecord(rows[0]!);
  const same = debit.billingAccountId === request.billingAccountId && debit.credits === request.credits && debit.reason === request.reason;
  if (!same) return { outcome: "conflict", debit };
  return { outcome: "existing", debit, balanceCredits: await balanceOf(client, debit.billingAccountId) };
}

async function balanceOf(client: pg.PoolClient, billingAccountId: string): Promise<bigint> {
  const { rows } = await client.query<{ balance_credits: string }>("SELECT balance_credits FROM accounts WHERE id = $1", [billingAccountId]);
  return BigInt(rows[0]?.balance_credits ?? 0);
}

function toDebitRecord(row: DebitRow): DebitRecord {
  return {
    id: row.id,
    billingAccountId: row.billing_account_id,
    credits: BigInt(row.credits),
    reference: row.reference,
    reason: row.reason,
    createdAt: row.created_at,
  };
}
