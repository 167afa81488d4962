import type pg from "pg";
import type { Logger } from "pino";
import { emitAlert } from "../books/alert-catalog.js";
import { countPendingActions, type DueAction, dueActions, markActionDone, markActionFailed, markActionSending } from "../books/enforcement.js";
import type { LitellmAdmin } from "../litellm/admin-api.js";
import { withSessionLock } from "../platform/db/client.js";
import type { Deps } from "../platform/deps.js";
import type { Stoppable } from "../platform/process.js";
import { startPeriodicTask } from "./periodic-task.js";

// A decision reaches the gateway within about this long, when it is up.
const POLL_MS = 1_000;
const ACTIONS_PER_QUERY = 100;
// A pass that outlasts this ends, and the next starts where it left off: shutdown never waits longer.
const PASS_BUDGET_MS = 15_000;
const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 10_000;
/** One deliverer at a time across all workers: a session lock, lost with its connection when a worker dies. */
const DELIVERY_LOCK = 0x5e_11_de11;

type Delivery = { pool: pg.Pool; admin: LitellmAdmin; logger: Logger; metrics: Deps["metrics"] };

/** Delivers decided blocks and unblocks to LiteLLM every POLL_MS, until stopped. */
export function startEnforcementDelivery(delivery: Delivery): Stoppable {
  return startPeriodicTask({
    name: "enforcement delivery",
    everyMs: POLL_MS,
    runAtStart: true,
    run: () => deliverPending(delivery),
    onFailure: (error) => delivery.logger.warn({ err: error }, "enforcement delivery pass failed; the next one tries again"),
  });
}

/**
 * One pass, by whichever worker holds the delivery lock: the due actions in the order they were
 * decided, again until none is due. A principal's actions go one after another: one that fails
 * holds the rest of that principal's until it lands, so the last decision is the last one the
 * gateway hears; one LiteLLM answers does not exist is done, and holds nothing. A gateway that does not answer at all ends the pass (every call would wait the
 * same way). Every worker counts what is pending, for its gauge.
 */
export async function deliverPending(delivery: Delivery): Promise<void> {
  // Every statement of the pass runs on the lock's own connection: if that connection is lost, so
  // is the lock, and the pass stops at its next statement rather than deliver beside the next holder.
  await withSessionLock(delivery.pool, DELIVERY_LOCK, (client) => deliverUnderLock(client, delivery, Date.now() + PASS_BUDGET_MS));
  delivery.metrics.enforcementPending.set(await countPendingActions(delivery.pool));
}

async function deliverUnderLock(client: pg.PoolClient, { admin, logger, metrics }: Delivery, deadline: number): Promise<void> {
  for (;;) {
    const due = await dueActions(client, ACTIONS_PER_QUERY);
    if (due.length === 0) return;
    for (const action of due) {
      if (Date.now() > deadline) return;
      await markActionSending(client, action.id);
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
        // Once: LiteLLM's own answer that the principal cannot exist, so nothing will change on a retry.
        emitAlert(logger, { event: "enforcement_principal_unknown", fields: { ...alertFields(action, attempt), answer: answer.unknown, error: answer.error } });
        continue;
      }
      const retryInMs = Math.min(FIRST_RETRY_MS * 2 ** (attempt - 1), LONGEST_RETRY_MS);
      await markActionFailed(client, action.id, answer, retryInMs);
      metrics.enforcementCalls.inc({ action: action.action, outcome: "failed" });
      emitAlert(logger, { event: "enforcement_failed", fields: { ...alertFields(action, attempt), error: answer.error, final: false, retry_in_ms: retryInMs } });
      if (answer.unreachable) return;
    }
  }
}

function alertFields(action: DueAction, attempt: number) {
  return {
    billing_account_id: action.billingAccountId,
    principal_kind: action.kind,
    principal: action.principal,
    action: action.action,
    action_id: action.id.toString(),
    attempt,
    resend: action.resend,
  };
}
