import type pg from "pg";
import { withTransaction } from "../db/client.js";
import { moveBalances } from "./record-usage.js";

export type GrantRequest = { billingAccountId: string; credits: bigint; reference: string; reason: string | null };

export type GrantRecord = {
  id: string;
  billingAccountId: string;
  credits: bigint;
  reference: string;
  reason: string | null;
  createdAt: Date;
};

export type GrantOutcome =
  | { outcome: "created" | "existing"; grant: GrantRecord; balanceCredits: bigint }
  | { outcome: "conflict"; grant: GrantRecord };

type GrantRow = {
  id: string;
  billing_account_id: string;
  credits: string;
  reference: string;
  reason: string | null;
  created_at: Date;
};

/**
 * Adds credits once per reference: the same request again returns the first grant, and the
 * same reference with another account or amount is a conflict. A negative balance simply rises.
 */
export async function recordGrant(pool: pg.Pool, request: GrantRequest): Promise<GrantOutcome> {
  try {
    return await recordGrantOnce(pool, request);
  } catch (error) {
    // Rolled back, so a conflicting request leaves no account behind it.
    if (error instanceof GrantConflict) return { outcome: "conflict", grant: error.existing };
    throw error;
  }
}

class GrantConflict extends Error {
  constructor(readonly existing: GrantRecord) {
    super(`grant reference ${existing.reference} was used for another grant`);
  }
}

async function recordGrantOnce(pool: pg.Pool, request: GrantRequest): Promise<GrantOutcome> {
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<GrantRow>(
      `INSERT INTO grants (billing_account_id, reference, credits, reason) VALUES ($1, $2, $3, $4)
       ON CONFLICT (reference) DO NOTHING RETURNING *`,
      [request.billingAccountId, request.reference, request.credits.toString(), request.reason],
    );
    const created = rows[0];
    if (!created) {
      const { rows: existingRows } = await client.query<GrantRow>("SELECT * FROM grants WHERE reference = $1", [
        request.reference,
      ]);
      const existing = toGrantRecord(existingRows[0]!);
      const same = existing.billingAccountId === request.billingAccountId && existing.credits === request.credits;
      if (!same) throw new GrantConflict(existing);
      const { rows: account } = await client.query<{ balance_credits: string }>(
        "SELECT balance_credits FROM accounts WHERE id = $1",
        [existing.billingAccountId],
      );
      return { outcome: "existing", grant: existing, balanceCredits: BigInt(account[0]!.balance_credits) };
    }
    const grant = toGrantRecord(created);
    const balanceAfter = (await moveBalances(client, new Map([[grant.billingAccountId, grant.credits]]))).get(grant.billingAccountId)!;
    const balanceBefore = balanceAfter - grant.credits;
    await client.query(
      `INSERT INTO ledger_entries (billing_account_id, kind, amount_credits, balance_before, balance_after, reference, grant_id)
       VALUES ($1, 'grant', $2, $3, $4, $5, $6)`,
      [grant.billingAccountId, grant.credits.toString(), balanceBefore.toString(), balanceAfter.toString(), grant.reference, grant.id],
    );
    return { outcome: "created", grant, balanceCredits: balanceAfter };
  });
}

function toGrantRecord(row: GrantRow): GrantRecord {
  return {
    id: row.id,
    billingAccountId: row.billing_account_id,
    credits: BigInt(row.credits),
    reference: row.reference,
    reason: row.reason,
    createdAt: row.created_at,
  };
}
