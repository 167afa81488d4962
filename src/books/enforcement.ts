import { and, eq, inArray, isNull, sql } from "drizzle-orm";
import type pg from "pg";
import type { PrincipalKind } from "../platform/config.js";
import { drizzleOver, withTransaction } from "../platform/db/client.js";
import { accountPrincipals, enforcementAccounts, enforcementActions, enforcementPrincipals } from "../platform/db/schema.js";
import { compareText, type PostedEntry } from "./post-entries.js";

/** `blocks` empty: enforcement is off. An account is depleted at `below` credits or fewer. */
export type EnforcementPolicy = { blocks: readonly PrincipalKind[]; below: bigint };
export const ENFORCEMENT_OFF: EnforcementPolicy = { blocks: [], below: 0n };

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
 * Recovery does not depend on the policy: an account blocked once is unblocked when its balance
 * recovers even with enforcement off (or off in this process), and every kind it blocked is lifted.
 * Returns how many actions were decided.
 */
export async function enforceAfterPosting(
  client: pg.PoolClient,
  policy: EnforcementPolicy,
  posted: readonly PostedEntry[],
  paidBy: readonly PaidBy[] = [],
): Promise<number> {
  const enforcing = policy.blocks.length > 0;
  // Only while enforcing: on every charge it is a write per batch. The principals of the charge
  // that crosses are recorded before the decision, so they are blocked with it.
  const newlyPaying = enforcing ? await recordPrincipals(client, paidBy) : new Set<string>();
  // Not enforcing, only a grant can change a state (it may lift a blocked account); a charge
  // never can. This spares every charge transaction a read while enforcement is off.
  if (posted.length === 0 || (!enforcing && !posted.some((entry) => entry.amountCredits > 0n))) return 0;
  const db = drizzleOver(client);
  const movesByAccount = new Map<string, PostedEntry[]>();
  for (const entry of posted) {
    const moves = movesByAccount.get(entry.billingAccountId);
    if (moves === undefined) movesByAccount.set(entry.billingAccountId, [entry]);
    else moves.push(entry);
  }
  const stored = new Map(
    (
      await db
        .select({ account: enforcementAccounts.billingAccountId, state: enforcementAccounts.state })
        .from(enforcementAccounts)
        .where(inArray(enforcementAccounts.billingAccountId, [...movesByAccount.keys()]))
    ).map((row) => [row.account, row.state]),
  );
  const changed = new Map<string, AccountState>();
  const recheck: string[] = [];
  for (const [account, moves] of movesByAccount) {
    const before = stored.get(account);
    // Never decided and not enforcing: nothing to lift, nothing to block.
    if (before === undefined && !enforcing) continue;
    let after = stateAfter(before ?? "unblocked", moves, policy.below);
    // Not enforcing, an account is never newly blocked; it is only let go.
    if (!enforcing && after === "blocked" && before !== "blocked") after = before ?? "unblocked";
    if (after !== (before ?? "unblocked")) changed.set(account, after);
    // A principal that starts paying for a blocked account is blocked too.
    else if (enforcing && after === "blocked" && newlyPaying.has(account)) recheck.push(account);
  }
  if (changed.size === 0 && recheck.length === 0) return 0;
  await client.query("SELECT pg_advisory_xact_lock($1)", [DECISION_LOCK]);
  await writeAccountStates(db, changed);
  const decisions = await decidePrincipals(client, [...changed.keys(), ...recheck], policy.blocks);
  return decisions.filter((decision) => decision.action !== null).length;
}

/**
 * An account's state after the moves of its balance, in order: blocked at or below the
 * threshold, unblocked above it. An operator's hold stays while the balance stays at or below
 * the threshold, and ends with any move that starts or ends above it.
 */
function stateAfter(state: AccountState, moves: readonly PostedEntry[], below: bigint): AccountState {
  let current = state;
  for (const move of moves) {
    const depleted = move.balanceAfter <= below;
    if (current === "held_open" && move.balanceBefore <= below && depleted) continue;
    current = depleted ? "blocked" : "unblocked";
  }
  return current;
}

/**
 * Decisions for principals of accounts that are blocked now, as the settings stand: run when a
 * worker starts, so a policy that names a kind it did not name before blocks those principals
 * of accounts already blocked (a kind it no longer names is lifted as those accounts recover),
 * and an account above a lowered ENFORCE_BELOW is unblocked. The accounts are not locked: a
 * charge or grant moving one meanwhile decides again after this, in order.
 */
export async function enforceCurrentPolicy(pool: pg.Pool, policy: EnforcementPolicy): Promise<number> {
  return withTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1)", [DECISION_LOCK]);
    // An account blocked under a higher threshold than today's is let go: no charge will move it.
    const { rows: lifted } = await client.query<{ billing_account_id: string }>(
      `UPDATE enforcement_accounts e SET state = 'unblocked', changed_at = now() FROM accounts a
       WHERE a.id = e.billing_account_id AND e.state = 'blocked' AND a.balance_credits > $1::int8
       RETURNING e.billing_account_id`,
      [policy.below.toString()],
    );
    const blocked = await drizzleOver(client)
      .select({ account: enforcementAccounts.billingAccountId })
      .from(enforcementAccounts)
      .where(eq(enforcementAccounts.state, "blocked"));
    const accounts = [...lifted.map((row) => row.billing_account_id), ...(policy.blocks.length === 0 ? [] : blocked.map((row) => row.account))];
    if (accounts.length === 0) return 0;
    const decisions = await decidePrincipals(client, accounts, policy.blocks);
    return decisions.filter((decision) => decision.action !== null).length;
  });
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
  const rows = [...uses].sort(([a], [b]) => compareText(a, b)).map(([, row]) => row);
  const { rows: written } = await client.query<{ billing_account_id: string; inserted: boolean }>(
    // Rows already up to date are filtered out before the insert: ON CONFLICT would lock (and so
    // write) each of them even when its WHERE skips the update.
    `INSERT INTO account_principals AS p (billing_account_id, kind, principal, first_used_at, last_used_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) AS u(account, kind, principal, first_used, last_used)
     WHERE NOT EXISTS (SELECT 1 FROM account_principals known
                       WHERE known.billing_account_id = u.account AND known.kind = u.kind AND known.principal = u.principal
                         AND known.last_used_at + interval '1 minute' >= u.last_used AND known.first_used_at <= u.first_used)
     ON CONFLICT (billing_account_id, kind, principal) DO UPDATE
       SET first_used_at = least(p.first_used_at, EXCLUDED.first_used_at), last_used_at = greatest(p.last_used_at, EXCLUDED.last_used_at)
       -- Last use to the minute: a principal paying every second does not rewrite its row every batch.
       WHERE EXCLUDED.last_used_at > p.last_used_at + interval '1 minute' OR EXCLUDED.first_used_at < p.first_used_at
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
  /** What the gateway was told before this decision. */
  told: "blocked" | "unblocked";
  /** A principal left blocked is held by another account it paid for, still blocked. */
  blockedBy: string | null;
};

/**
 * For the principals of `accounts`, of every kind: blocked while any account they paid for is
 * blocked, else unblocked. Where that differs from what the gateway was last told, the
 * principal's state changes and an action is queued; a block only for the kinds in `blockKinds`,
 * an unblock for any kind (whatever blocked it). Runs under DECISION_LOCK.
 */
async function decidePrincipals(client: pg.PoolClient, accounts: readonly string[], blockKinds: readonly PrincipalKind[]): Promise<PrincipalDecision[]> {
  // Raw SQL: one set-based statement over the accounts' principals and every account they paid for.
  const { rows } = await client.query<{ kind: PrincipalKind; principal: string; account: string; blocked_by: string | null; told: string | null }>(
    `SELECT c.kind, c.principal, c.account, s.state AS told,
            (SELECT p.billing_account_id FROM account_principals p
               JOIN enforcement_accounts e ON e.billing_account_id = p.billing_account_id AND e.state = 'blocked'
             WHERE p.kind = c.kind AND p.principal = c.principal ORDER BY p.billing_account_id LIMIT 1) AS blocked_by
     FROM (SELECT kind, principal, min(billing_account_id) AS account FROM account_principals
           WHERE billing_account_id = ANY($1::text[]) GROUP BY kind, principal) c
     LEFT JOIN enforcement_principals s ON s.kind = c.kind AND s.principal = c.principal
     ORDER BY c.kind, c.principal`,
    [accounts],
  );
  const decisions: PrincipalDecision[] = rows.map((row) => {
    const told = row.told === "blocked" ? "blocked" : "unblocked";
    let action: PrincipalDecision["action"] = null;
    if (row.blocked_by === null && told === "blocked") action = "unblock";
    if (row.blocked_by !== null && told === "unblocked" && blockKinds.includes(row.kind)) action = "block";
    return { kind: row.kind, principal: row.principal, billingAccountId: row.blocked_by ?? row.account, action, told, blockedBy: row.blocked_by };
  });
  const acting = decisions.filter((decision) => decision.action !== null);
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
 * account holds stay blocked, and say which), and the account is held open: not blocked again
 * until its balance has risen above the threshold and fallen again. Null: no such account.
 */
export async function holdOpen(pool: pg.Pool, billingAccountId: string): Promise<PrincipalDecision[] | null> {
  return withTransaction(pool, async (client) => {
    // The account's row lock orders this with its charges and grants, as they order themselves.
    const { rowCount } = await client.query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", [billingAccountId]);
    if (rowCount === 0) return null;
    await client.query("SELECT pg_advisory_xact_lock($1)", [DECISION_LOCK]);
    // Held whatever the balance: the next move that starts or ends above the workers' threshold ends it.
    await writeAccountStates(drizzleOver(client), new Map([[billingAccountId, "held_open" as const]]));
    // Blocks nothing, whatever the policy; unblocks whatever an earlier policy blocked.
    return decidePrincipals(client, [billingAccountId], []);
  });
}

export type EnforcementAction = typeof enforcementActions.$inferSelect;

/** An action to send now: `action` is what to send (for a resend, the principal's state as it stands). */
export type DueAction = Pick<EnforcementAction, "id" | "kind" | "principal" | "action" | "billingAccountId" | "attempts" | "resend">;

/**
 * The actions to send now, in the order they were decided: each principal's oldest decided
 * action not yet done, when due (the rest of that principal's wait behind it), and a principal's
 * resend once nothing decided is pending for it. Raw SQL: DISTINCT ON inside a union.
 */
export async function dueActions(client: pg.PoolClient, limit: number): Promise<DueAction[]> {
  const { rows } = await client.query<{ id: string; kind: PrincipalKind; principal: string; action: "block" | "unblock"; billing_account_id: string; attempts: number; resend: boolean }>(
    `SELECT id, kind, principal, action, billing_account_id, attempts, resend FROM (
       SELECT DISTINCT ON (kind, principal) * FROM enforcement_actions
       WHERE done_at IS NULL AND NOT resend ORDER BY kind, principal, id
     ) oldest WHERE next_attempt_at <= now()
     UNION ALL
     SELECT r.id, r.kind, r.principal, CASE s.state WHEN 'blocked' THEN 'block' ELSE 'unblock' END, r.billing_account_id, r.attempts, true
     FROM enforcement_actions r LEFT JOIN enforcement_principals s ON s.kind = r.kind AND s.principal = r.principal
     WHERE r.done_at IS NULL AND r.resend AND r.next_attempt_at <= now()
       AND NOT EXISTS (SELECT 1 FROM enforcement_actions d
                       WHERE d.kind = r.kind AND d.principal = r.principal AND d.done_at IS NULL AND NOT d.resend)
     ORDER BY id LIMIT $1`,
    [limit],
  );
  return rows.map((row) => ({ ...row, id: BigInt(row.id), billingAccountId: row.billing_account_id }));
}

export async function countPendingActions(pool: pg.Pool): Promise<number> {
  const [row] = await drizzleOver(pool)
    .select({ pending: sql<number>`count(*)::int` })
    .from(enforcementActions)
    .where(and(isNull(enforcementActions.doneAt), eq(enforcementActions.resend, false)));
  return row?.pending ?? 0;
}

/** Counted before each call: a call whose deliverer dies before its answer is recorded may still land. */
export async function markActionSending(client: pg.PoolClient, id: bigint): Promise<void> {
  await drizzleOver(client).update(enforcementActions).set({ sends: sql`${enforcementActions.sends} + 1` }).where(eq(enforcementActions.id, id));
}

// Long past any call LiteLLM is still working on when its answer timed out.
const RESEND_AFTER_MS = 60_000;

/**
 * The gateway answered: the action is done (`outcome` says how). If any of its calls may still
 * land late (one timed out or was cut, or a deliverer died during one), the principal's state as
 * it then stands is sent once more, RESEND_AFTER_MS after this (a pending resend is pushed out
 * as far), so a late block cannot outlast the unblock decided after it, nor a late unblock the
 * block. Raw SQL: one statement, so it needs no transaction on the delivery lock's connection.
 */
export async function markActionDone(client: pg.PoolClient, id: bigint, outcome: "done" | "not_found", error: string | null): Promise<void> {
  await client.query(
    `WITH done AS (
       UPDATE enforcement_actions SET done_at = now(), outcome = $2, attempts = attempts + 1, last_error = $3,
              uncertain = uncertain OR sends > attempts + 1
       WHERE id = $1 AND done_at IS NULL
       RETURNING kind, principal, action, billing_account_id, uncertain
     ), pushed AS (
       UPDATE enforcement_actions r SET next_attempt_at = greatest(r.next_attempt_at, now() + make_interval(secs => $4::double precision))
       FROM done WHERE done.uncertain AND r.kind = done.kind AND r.principal = done.principal AND r.resend AND r.done_at IS NULL AND r.id <> $1
       RETURNING r.id
     )
     INSERT INTO enforcement_actions (kind, principal, action, billing_account_id, resend, next_attempt_at)
     SELECT kind, principal, action, billing_account_id, true, now() + make_interval(secs => $4::double precision)
     FROM done WHERE done.uncertain AND NOT EXISTS (SELECT 1 FROM pushed)`,
    [id.toString(), outcome, error, RESEND_AFTER_MS / 1000],
  );
}

/** A failed attempt: tried again after `retryInMs`; the principal's later actions wait for it. */
export async function markActionFailed(client: pg.PoolClient, id: bigint, failure: { error: string; uncertain: boolean }, retryInMs: number): Promise<void> {
  await drizzleOver(client)
    .update(enforcementActions)
    .set({
      attempts: sql`${enforcementActions.attempts} + 1`,
      lastError: failure.error,
      uncertain: sql`${enforcementActions.uncertain} OR ${failure.uncertain} OR ${enforcementActions.sends} > ${enforcementActions.attempts} + 1`,
      nextAttemptAt: sql`now() + make_interval(secs => ${retryInMs}::double precision / 1000)`,
    })
    .where(and(eq(enforcementActions.id, id), isNull(enforcementActions.doneAt)));
}

export type EnforcementListing = {
  accounts: Array<{ billingAccountId: string; state: AccountState | "never_decided"; changedAt: Date | null }>;
  principals: Array<typeof accountPrincipals.$inferSelect & { state: "blocked" | "unblocked" }>;
  actions: EnforcementAction[];
};

const LISTED_ACCOUNTS = 1000;
const LISTED_ACTIONS = 100;
const LISTED_PRINCIPALS = 1000;

/** What enforcement knows: accounts' states, who paid for them, and the newest actions, for one account or all. */
export async function listEnforcement(pool: pg.Pool, billingAccountId?: string): Promise<EnforcementListing> {
  const db = drizzleOver(pool);
  const accountFilter = billingAccountId === undefined ? undefined : eq(enforcementAccounts.billingAccountId, billingAccountId);
  const accounts = await db.select().from(enforcementAccounts).where(accountFilter).orderBy(enforcementAccounts.billingAccountId).limit(LISTED_ACCOUNTS);
  const principals = await db
    .select({ principal: accountPrincipals, state: enforcementPrincipals.state })
    .from(accountPrincipals)
    .leftJoin(
      enforcementPrincipals,
      and(eq(enforcementPrincipals.kind, accountPrincipals.kind), eq(enforcementPrincipals.principal, accountPrincipals.principal)),
    )
    .where(billingAccountId === undefined ? undefined : eq(accountPrincipals.billingAccountId, billingAccountId))
    .orderBy(accountPrincipals.billingAccountId, accountPrincipals.kind, accountPrincipals.principal)
    .limit(LISTED_PRINCIPALS);
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
