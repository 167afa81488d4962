import { and, asc, eq, inArray, isNull, sql } from "drizzle-orm";
import type pg from "pg";
import type { EnforcementPolicy, PrincipalKind } from "../platform/config.js";
import { drizzleOver, withTransaction } from "../platform/db/client.js";
import { accountPrincipals, enforcementAccounts, enforcementActions, enforcementPrincipals } from "../platform/db/schema.js";
import type { PostedEntry } from "./post-entries.js";

/** A LiteLLM key (by its hash) or team that paid for one of an account's calls. */
export type PaidBy = { billingAccountId: string; kind: PrincipalKind; principal: string; usedAt: Date };

export type AccountState = (typeof enforcementAccounts.$inferSelect)["state"];

/**
 * Taken only when a decision is written (a crossing, rare), after the account rows are locked:
 * decisions about principals are made one transaction at a time, so each sees the states the
 * one before it committed, and actions are numbered in the order they were decided.
 */
const DECISION_LOCK = 0x5e_11_b10c;

/**
 * After a charge's or a grant's postings, in the same transaction: records who paid, and
 * decides from each moved account's balances whether its principals are to be blocked or
 * unblocked at the gateway. A decision is an outbox row, delivered by the workers.
 * Returns how many actions were decided.
 */
export async function enforceAfterPosting(
  client: pg.PoolClient,
  policy: EnforcementPolicy,
  posted: readonly PostedEntry[],
  paidBy: readonly PaidBy[] = [],
): Promise<number> {
  const newlyPaying = await recordPrincipals(client, paidBy);
  if (policy.blocks.length === 0 || posted.length === 0) return 0;
  const db = drizzleOver(client);
  const balancesByAccount = new Map<string, bigint[]>();
  for (const entry of posted) {
    const balances = balancesByAccount.get(entry.billingAccountId) ?? [];
    balances.push(entry.balanceAfter);
    balancesByAccount.set(entry.billingAccountId, balances);
  }
  const stored = new Map(
    (
      await db
        .select({ account: enforcementAccounts.billingAccountId, state: enforcementAccounts.state })
        .from(enforcementAccounts)
        .where(inArray(enforcementAccounts.billingAccountId, [...balancesByAccount.keys()]))
    ).map((row) => [row.account, row.state]),
  );
  const changed = new Map<string, AccountState>();
  const recheck: string[] = [];
  for (const [account, balances] of balancesByAccount) {
    const before = stored.get(account) ?? "unblocked";
    const after = stateAfter(before, balances, policy.below);
    if (after !== before) changed.set(account, after);
    // A principal that starts paying for a blocked account is blocked too.
    else if (after === "blocked" && newlyPaying.has(account)) recheck.push(account);
  }
  if (changed.size === 0 && recheck.length === 0) return 0;
  await client.query("SELECT pg_advisory_xact_lock($1)", [DECISION_LOCK]);
  await writeAccountStates(db, changed);
  return (await decidePrincipals(client, policy.blocks, [...changed.keys(), ...recheck])).filter((decision) => decision.action !== null).length;
}

/**
 * An account's state after its balance went through `balances` in order: blocked at or below
 * the threshold, unblocked above it; an operator's hold stays until the balance rises above it.
 */
function stateAfter(state: AccountState, balances: readonly bigint[], below: bigint): AccountState {
  let current = state;
  for (const balance of balances) {
    const depleted = balance <= below;
    if (current === "held_open") {
      if (!depleted) current = "unblocked";
      continue;
    }
    current = depleted ? "blocked" : "unblocked";
  }
  return current;
}

async function writeAccountStates(db: ReturnType<typeof drizzleOver>, states: ReadonlyMap<string, AccountState>): Promise<void> {
  if (states.size === 0) return;
  await db
    .insert(enforcementAccounts)
    .values([...states].map(([billingAccountId, state]) => ({ billingAccountId, state })))
    .onConflictDoUpdate({
      target: enforcementAccounts.billingAccountId,
      set: { state: sql`excluded.state`, changedAt: sql`now()` },
    });
}

/**
 * Which accounts have a principal paying for the first time. Raw SQL: the batch's principals
 * in one statement through unnest; `xmax = 0` is PostgreSQL's mark of a row this statement inserted.
 */
async function recordPrincipals(client: pg.PoolClient, paidBy: readonly PaidBy[]): Promise<Set<string>> {
  if (paidBy.length === 0) return new Set();
  const uses = new Map<string, { use: PaidBy; first: Date; last: Date }>();
  for (const use of paidBy) {
    const key = JSON.stringify([use.billingAccountId, use.kind, use.principal]);
    const known = uses.get(key);
    if (known === undefined) uses.set(key, { use, first: use.usedAt, last: use.usedAt });
    else {
      if (use.usedAt < known.first) known.first = use.usedAt;
      if (use.usedAt > known.last) known.last = use.usedAt;
    }
  }
  // In key order, so two transactions upserting the same rows lock them in one order.
  const rows = [...uses].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
  const { rows: written } = await client.query<{ billing_account_id: string; inserted: boolean }>(
    `INSERT INTO account_principals AS p (billing_account_id, kind, principal, first_used_at, last_used_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])
     ON CONFLICT (billing_account_id, kind, principal) DO UPDATE
       SET first_used_at = least(p.first_used_at, EXCLUDED.first_used_at), last_used_at = greatest(p.last_used_at, EXCLUDED.last_used_at)
       WHERE EXCLUDED.last_used_at > p.last_used_at OR EXCLUDED.first_used_at < p.first_used_at
     RETURNING billing_account_id, xmax = 0 AS inserted`,
    [
      rows.map((row) => row.use.billingAccountId),
      rows.map((row) => row.use.kind),
      rows.map((row) => row.use.principal),
      rows.map((row) => row.first.toISOString()),
      rows.map((row) => row.last.toISOString()),
    ],
  );
  return new Set(written.filter((row) => row.inserted).map((row) => row.billing_account_id));
}

export type PrincipalDecision = {
  kind: PrincipalKind;
  principal: string;
  /** The account whose change decided it. */
  billingAccountId: string;
  /** What the gateway is told now; null when it already stands as it should. */
  action: "block" | "unblock" | null;
  /** A principal left blocked is held by another account it paid for, still blocked. */
  blockedBy: string | null;
};

/**
 * For the principals of `accounts` (of `kinds`): blocked while any account
 * they paid for is blocked, else unblocked. Where that differs from what the gateway was last
 * told, the principal's state changes and an action is queued. Runs under DECISION_LOCK.
 */
async function decidePrincipals(
  client: pg.PoolClient,
  kinds: readonly PrincipalKind[],
  accounts: readonly string[],
  options: { mayBlock: boolean } = { mayBlock: true },
): Promise<PrincipalDecision[]> {
  // Raw SQL: one set-based statement over the accounts' principals and every account they paid for.
  const { rows } = await client.query<{ kind: PrincipalKind; principal: string; account: string; blocked_by: string | null; told: string | null }>(
    `SELECT c.kind, c.principal, c.account, s.state AS told,
            (SELECT p.billing_account_id FROM account_principals p
               JOIN enforcement_accounts e ON e.billing_account_id = p.billing_account_id AND e.state = 'blocked'
             WHERE p.kind = c.kind AND p.principal = c.principal ORDER BY p.billing_account_id LIMIT 1) AS blocked_by
     FROM (SELECT kind, principal, min(billing_account_id) AS account FROM account_principals
           WHERE billing_account_id = ANY($1::text[]) AND kind = ANY($2::text[]) GROUP BY kind, principal) c
     LEFT JOIN enforcement_principals s ON s.kind = c.kind AND s.principal = c.principal
     ORDER BY c.kind, c.principal`,
    [accounts, kinds],
  );
  const decisions: PrincipalDecision[] = rows.map((row) => {
    const wanted = row.blocked_by === null ? "unblocked" : "blocked";
    const told = row.told ?? "unblocked";
    return {
      kind: row.kind,
      principal: row.principal,
      billingAccountId: row.blocked_by ?? row.account,
      action: wanted === told ? null : wanted === "blocked" ? "block" : "unblock",
      blockedBy: row.blocked_by,
    };
  });
  const acting = decisions.filter((decision) => decision.action === "unblock" || (decision.action === "block" && options.mayBlock));
  if (acting.length === 0) return decisions;
  const db = drizzleOver(client);
  await db
    .insert(enforcementPrincipals)
    .values(acting.map((decision) => ({ kind: decision.kind, principal: decision.principal, state: decision.action === "block" ? ("blocked" as const) : ("unblocked" as const) })))
    .onConflictDoUpdate({
      target: [enforcementPrincipals.kind, enforcementPrincipals.principal],
      set: { state: sql`excluded.state`, changedAt: sql`now()` },
    });
  await db.insert(enforcementActions).values(
    acting.map((decision) => ({
      kind: decision.kind,
      principal: decision.principal,
      action: decision.action!,
      billingAccountId: decision.billingAccountId,
    })),
  );
  return decisions;
}

/**
 * The operator's override: the account's principals are unblocked now (those another blocked
 * account holds stay blocked, and say which), and the account is not blocked again until its
 * balance has risen above the threshold and crossed it again.
 */
export async function holdOpen(pool: pg.Pool, billingAccountId: string): Promise<PrincipalDecision[]> {
  return withTransaction(pool, async (client) => {
    // The account's row lock orders this with its charges and grants, as they order themselves.
    await client.query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", [billingAccountId]);
    await client.query("SELECT pg_advisory_xact_lock($1)", [DECISION_LOCK]);
    await writeAccountStates(drizzleOver(client), new Map([[billingAccountId, "held_open" as const]]));
    // Every kind, whatever the policy now: an override lifts what an earlier policy blocked, and blocks nothing.
    const decisions = await decidePrincipals(client, ["team", "key"], [billingAccountId], { mayBlock: false });
    return decisions.map((decision) => (decision.action === "block" ? { ...decision, action: null } : decision));
  });
}

export type EnforcementAction = typeof enforcementActions.$inferSelect;

/** Actions not yet done, in the order they were decided. */
export async function pendingActions(client: pg.Pool | pg.PoolClient, limit: number): Promise<EnforcementAction[]> {
  return drizzleOver(client).select().from(enforcementActions).where(isNull(enforcementActions.doneAt)).orderBy(asc(enforcementActions.id)).limit(limit);
}

export async function countPendingActions(pool: pg.Pool): Promise<number> {
  const [row] = await drizzleOver(pool).select({ pending: sql<number>`count(*)::int` }).from(enforcementActions).where(isNull(enforcementActions.doneAt));
  return row?.pending ?? 0;
}

/** The gateway answered: the action is done (`outcome` says how). */
export async function markActionDone(client: pg.PoolClient, id: bigint, outcome: "done" | "not_found", error: string | null): Promise<void> {
  await drizzleOver(client)
    .update(enforcementActions)
    .set({ doneAt: sql`now()`, outcome, attempts: sql`${enforcementActions.attempts} + 1`, lastError: error })
    .where(eq(enforcementActions.id, id));
}

/** A failed attempt: tried again after `retryInMs`, and nothing after it for the same principal before. */
export async function markActionFailed(client: pg.PoolClient, id: bigint, error: string, retryInMs: number): Promise<void> {
  await drizzleOver(client)
    .update(enforcementActions)
    .set({
      attempts: sql`${enforcementActions.attempts} + 1`,
      lastError: error,
      nextAttemptAt: sql`now() + make_interval(secs => ${retryInMs}::double precision / 1000)`,
    })
    .where(and(eq(enforcementActions.id, id), isNull(enforcementActions.doneAt)));
}

export type EnforcementListing = {
  accounts: Array<{ billingAccountId: string; state: AccountState | "never_decided"; changedAt: Date | null }>;
  principals: Array<typeof accountPrincipals.$inferSelect & { state: "blocked" | "unblocked" }>;
  actions: EnforcementAction[];
};

const LISTED_ACTIONS = 100;

/** What enforcement knows: accounts' states, who paid for them, and the newest actions, for one account or all. */
export async function listEnforcement(pool: pg.Pool, billingAccountId?: string): Promise<EnforcementListing> {
  const db = drizzleOver(pool);
  const accountFilter = billingAccountId === undefined ? undefined : eq(enforcementAccounts.billingAccountId, billingAccountId);
  const accounts = await db.select().from(enforcementAccounts).where(accountFilter).orderBy(enforcementAccounts.billingAccountId);
  const principals = await db
    .select({ principal: accountPrincipals, state: enforcementPrincipals.state })
    .from(accountPrincipals)
    .leftJoin(
      enforcementPrincipals,
      and(eq(enforcementPrincipals.kind, accountPrincipals.kind), eq(enforcementPrincipals.principal, accountPrincipals.principal)),
    )
    .where(billingAccountId === undefined ? undefined : eq(accountPrincipals.billingAccountId, billingAccountId))
    .orderBy(accountPrincipals.billingAccountId, accountPrincipals.kind, accountPrincipals.principal);
  const actions = await db
    .select()
    .from(enforcementActions)
    .where(billingAccountId === undefined ? undefined : eq(enforcementActions.billingAccountId, billingAccountId))
    .orderBy(sql`${enforcementActions.id} DESC`)
    .limit(LISTED_ACTIONS);
  const listedAccounts: EnforcementListing["accounts"] = accounts.map((row) => ({ billingAccountId: row.billingAccountId, state: row.state, changedAt: row.changedAt }));
  if (billingAccountId !== undefined && listedAccounts.length === 0 && principals.length > 0) {
    listedAccounts.push({ billingAccountId, state: "never_decided", changedAt: null });
  }
  return {
    accounts: listedAccounts,
    principals: principals.map((row) => ({ ...row.principal, state: row.state ?? "unblocked" })),
    actions: actions.reverse(),
  };
}
