import { eq, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type pg from "pg";
import { type Db, drizzleOver, withTransaction } from "../platform/db/client.js";
import { accounts, grants } from "../platform/db/schema.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { enforceAfterPosting, ENFORCEMENT_OFF, type EnforcementPolicy } from "./enforcement.js";
import { GRANT_CONTENT } from "./entry-hash.js";
import { postEntries } from "./post-entries.js";
import { type BucketTerms, EVERGREEN, openBucket } from "./credit-buckets.js";

export type GrantRequest = {
  billingAccountId: string;
  credits: bigint;
  reference: string;
  reason: string | null;
  /** Evergreen (no expiry, priority 50) when left out. */
  terms?: BucketTerms;
};

export type GrantRecord = {
  id: string;
  billingAccountId: string;
  credits: bigint;
  reference: string;
  reason: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  priority: number;
};

export type GrantOutcome =
  | { outcome: "created" | "existing"; grant: GrantRecord; balanceCredits: bigint }
  | { outcome: "conflict"; grant: GrantRecord }
  /** The balance would pass MAX_CREDITS: nothing was committed. */
  | { outcome: "out_of_range"; balanceCredits: bigint };

/**
 * Adds credits once per reference: the same request again returns the first grant, and the
 * same reference with another account, amount, expiry or priority is a conflict. The credits pay
 * the account's debt first; only the rest becomes a live bucket with the grant's terms.
 */
export async function recordGrant(pool: pg.Pool, request: GrantRequest, enforcement: EnforcementPolicy = ENFORCEMENT_OFF): Promise<GrantOutcome> {
  try {
    return await recordGrantOnce(pool, request, enforcement);
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

async function recordGrantOnce(pool: pg.Pool, request: GrantRequest, enforcement: EnforcementPolicy): Promise<GrantOutcome> {
  const terms = request.terms ?? EVERGREEN;
  return withTransaction(pool, async (client) => {
    const db = drizzleOver(client);
    const [created] = await db
      .insert(grants)
      .values({
        billingAccountId: request.billingAccountId,
        reference: request.reference,
        credits: request.credits,
        reason: request.reason,
        expiresAt: terms.expiresAt,
        priority: terms.priority,
      })
      .onConflictDoNothing({ target: grants.reference })
      .returning();
    if (!created) {
      const [existingRow] = await db.select().from(grants).where(eq(grants.reference, request.reference));
      const existing = toGrantRecord(existingRow!);
      const same =
        existing.billingAccountId === request.billingAccountId &&
        existing.credits === request.credits &&
        existing.priority === terms.priority &&
        existing.expiresAt?.getTime() === terms.expiresAt?.getTime();
      if (!same) throw new GrantConflict(existing);
      return { outcome: "existing", grant: existing, balanceCredits: (await balanceOf(db, existing.billingAccountId)) ?? 0n };
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
        sourceId: null,
        sourceContent: await storedContent(db, created.id),
      },
    ]);
    if (posted.length === 0) throw new GrantOutOfRange((await balanceOf(db, grant.billingAccountId)) ?? 0n);
    await openBucket(client, posted[0]!, { source: "grant", sourceId: grant.id, terms });
    // A grant that lifts the balance above the threshold unblocks, in its own transaction.
    await enforceAfterPosting(client, enforcement, posted);
    return { outcome: "created", grant, balanceCredits: posted[0]!.balanceAfter };
  });
}

/** The grant's content as stored, which its ledger entry's hash covers (GRANT_CONTENT reads alias `g`). */
async function storedContent(db: Db, id: bigint): Promise<string> {
  const g = alias(grants, "g");
  const [row] = await db.select({ content: sql<string>`${sql.raw(GRANT_CONTENT)}` }).from(g).where(eq(g.id, id));
  return row!.content;
}

async function balanceOf(db: Db, billingAccountId: string): Promise<bigint | null> {
  const [row] = await db.select({ balance: accounts.balanceCredits }).from(accounts).where(eq(accounts.id, billingAccountId));
  return row?.balance ?? null;
}

function toGrantRecord(row: typeof grants.$inferSelect): GrantRecord {
  return { ...row, id: row.id.toString() };
}
