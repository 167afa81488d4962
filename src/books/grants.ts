import type pg from "pg";
import { withTransaction } from "../platform/db/client.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { GRANT_CONTENT } from "./entry-hash.js";
import { postEntries } from "./post-entries.js";

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
  | { outcome: "conflict"; grant: GrantRecord }
  /** The balance would pass MAX_CREDITS: nothing was committed. */
  | { outcome: "out_of_range"; balanceCredits: bigint };

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
    if (error instanceof GrantOutOfRange) return { outcome: "out_of_range", balanceCredits: error.balanceCredits };
    throw error;
  }
}

class GrantConflict extends Error {
  constructor(readonly existing: GrantRecord) {
    super(`grant reference ${existing.reference} was used for another grant`);
  }
}

class GrantOutOfRange extends Error {
  constructor(readonly balanceCredits: bigint) {
    super(`the grant would take the balance past ${MAX_CREDITS} credits`);
  }
}

async function recordGrantOnce(pool: pg.Pool, request: GrantRequest): Promise<GrantOutcome> {
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<GrantRow & { content: string }>(
      `INSERT INTO grants AS g (billing_account_id, reference, credits, reason) VALUES ($1, $2, $3, $4)
       ON CONFLICT (reference) DO NOTHING RETURNING g.*, ${GRANT_CONTENT} AS content`,
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
    const { posted } = await postEntries(client, [
      {
        billingAccountId: grant.billingAccountId,
        kind: "grant",
        amountCredits: grant.credits,
        reference: grant.reference,
        receiptId: null,
        grantId: grant.id,
        sourceContent: created.content,
      },
    ]);
    if (posted.length === 0) {
      const { rows: account } = await client.query<{ balance_credits: string }>("SELECT balance_credits FROM accounts WHERE id = $1", [
        grant.billingAccountId,
      ]);
      throw new GrantOutOfRange(BigInt(account[0]?.balance_credits ?? "0"));
    }
    const balanceAfter = posted[0]!.balanceAfter;
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
