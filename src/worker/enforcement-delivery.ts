import type pg from "pg";
import type { Logger } from "pino";
import { emitAlert } from "../books/alert-catalog.js";
import { countPendingActions, type EnforcementAction, markActionDone, markActionFailed, pendingActions } from "../books/enforcement.js";
import type { LitellmAdmin } from "../gateway/litellm-admin.js";
import type { Deps } from "../platform/deps.js";
import type { Stoppable } from "../platform/process.js";

// A decision reaches the gateway within about this long, when it is up.
const POLL_MS = 1_000;
const ACTIONS_PER_PASS = 100;
const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 10_000;
/** One deliverer at a time across all workers: a session lock, lost with its connection when a worker dies. */
const DELIVERY_LOCK = 0x5e_11_de11;

type Delivery = { pool: pg.Pool; admin: LitellmAdmin; logger: Logger; metrics: Deps["metrics"] };

/** Delivers decided blocks and unblocks to LiteLLM every POLL_MS, until stopped. */
export function startEnforcementDelivery(delivery: Delivery): Stoppable {
  let running: Promise<void> | null = null;
  const tick = () => {
    running ??= deliverPending(delivery)
      .catch((error) => delivery.logger.warn({ err: error }, "enforcement delivery pass failed; the next one tries again"))
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(tick, POLL_MS);
  timer.unref();
  tick();
  return {
    name: "enforcement delivery",
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}

/**
 * One pass: the pending actions in the order they were decided. A principal's actions go one
 * after another: one that fails holds the rest of that principal's until it lands, so the last
 * decision is always the last one the gateway hears. A gateway that does not answer at all ends
 * the pass (every call would wait the same way); the next pass starts with the oldest due action.
 */
export async function deliverPending(delivery: Delivery): Promise<void> {
  const client = await delivery.pool.connect();
  let failure: Error | undefined;
  try {
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [DELIVERY_LOCK]);
    if (!rows[0]!.locked) return;
    try {
      await deliverUnderLock(client, delivery);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [DELIVERY_LOCK]);
    }
  } catch (error) {
    failure = error as Error;
    throw error;
  } finally {
    // A client that failed may still hold the session lock: destroyed, never back in the pool.
    client.release(failure);
  }
  delivery.metrics.enforcementPending.set(await countPendingActions(delivery.pool));
}

async function deliverUnderLock(client: pg.PoolClient, { admin, logger, metrics }: Delivery): Promise<void> {
  const held = new Set<string>();
  for (const action of await pendingActions(client, ACTIONS_PER_PASS)) {
    const principal = `${action.kind}:${action.principal}`;
    if (held.has(principal)) continue;
    if (action.nextAttemptAt.getTime() > Date.now()) {
      held.add(principal);
      continue;
    }
    const answer = await admin.send({ kind: action.kind, principal: action.principal, action: action.action });
    const attempt = action.attempts + 1;
    if (answer.ok) {
      await markActionDone(client, action.id, "done", null);
      metrics.enforcementCalls.inc({ action: action.action, outcome: "done" });
      emitAlert(logger, { event: action.action === "block" ? "enforcement_blocked" : "enforcement_unblocked", fields: alertFields(action, attempt) });
      continue;
    }
    if (answer.final) {
      await markActionDone(client, action.id, "not_found", answer.error);
      metrics.enforcementCalls.inc({ action: action.action, outcome: "not_found" });
      emitAlert(logger, { event: "enforcement_failed", fields: { ...alertFields(action, attempt), error: answer.error, final: true } });
      continue;
    }
    const retryInMs = Math.min(FIRST_RETRY_MS * 2 ** (attempt - 1), LONGEST_RETRY_MS);
    await markActionFailed(client, action.id, answer.error, retryInMs);
    metrics.enforcementCalls.inc({ action: action.action, outcome: "failed" });
    emitAlert(logger, { event: "enforcement_failed", fields: { ...alertFields(action, attempt), error: answer.error, final: false, retry_in_ms: retryInMs } });
    held.add(principal);
    if (answer.unreachable) break;
  }
}

function alertFields(action: EnforcementAction, attempt: number) {
  return {
    billing_account_id: action.billingAccountId,
    principal_kind: action.kind,
    principal: action.principal,
    action: action.action,
    action_id: action.id.toString(),
    attempt,
  };
}
