import type { Logger } from "pino";

/**
 * Every alert the alerting pipeline may receive: one pino line each, `event` set to the name,
 * its level, what it means (`summary`, also the line's message) and what an operator does about
 * it. docs/reference/alerts.md has a row for each, checked by a test.
 */
export const ALERT_CATALOG = {
  inv_post_call_negative_balance: {
    level: "error",
    summary: "a committed charge left the balance below zero",
    whatToDo: "top the account up or block it at the gateway; nothing was refused",
  },
  balance_depleted: {
    level: "warn",
    summary: "a charge (or debit, transfer out, expiry) took the balance from above zero to zero or below",
    whatToDo: "tell the customer; decide whether to block the key",
  },
  low_balance: {
    level: "warn",
    summary: "a charge (or debit, transfer out, expiry) took the balance below a low-balance threshold",
    whatToDo: "prompt a top-up",
  },
  credits_expiring: {
    level: "warn",
    summary: "a credit bucket with credits left expires within CREDITS_EXPIRING_WITHIN (once per bucket)",
    whatToDo: "tell the customer what will lapse and when",
  },
  credits_expired: {
    level: "warn",
    summary: "a credit bucket expired with credits left; they left the balance as an expiry entry",
    whatToDo: "nothing, unless they are to be given back: grant them again",
  },
  inv_unpriced_model: {
    level: "error",
    summary: "an event could not be priced and was quarantined",
    whatToDo: "add the model to the price book, SIGHUP the workers, replay quarantine reason unpriced_model",
  },
  receipt_conflict: {
    level: "warn",
    summary: "a call (request id and time) arrived again with different usage; the first stands",
    whatToDo: "compare the quarantined copy with the receipt; usually a gateway bug",
  },
  response_id_reused: {
    level: "warn",
    summary: "a request id already charged for one call came with another call; that call is charged under a key of its own",
    whatToDo: "nothing in billing; many from one provider: report it upstream",
  },
  event_quarantined: {
    level: "warn",
    summary: "an item was quarantined",
    whatToDo: "see the quarantine reason's own what to do",
  },
  inv_gateway_unbilled: {
    level: "warn",
    summary: "the gateway backfill billed calls LiteLLM recorded whose callbacks never arrived",
    whatToDo: "nothing is lost; often: find why the gateway loses callbacks",
  },
  gateway_backfill_behind: {
    level: "warn",
    summary: "the gateway backfill's watermark lags by half or more of LiteLLM's spend-log retention: calls it has not read will soon be deleted",
    whatToDo: "find why backfill runs fail and fix it before LiteLLM deletes the calls",
  },
  inv_price_divergence: {
    level: "warn",
    summary: "the exact cost at the gateway's own rates differs from LiteLLM's reported cost by a credit or more",
    whatToDo: "compare the terms with LiteLLM's cost breakdown; fix the book if it is wrong, then SIGHUP",
  },
  enforcement_blocked: {
    level: "warn",
    summary: "LiteLLM blocked a key or team of a depleted account",
    whatToDo: "nothing: enforcement working",
  },
  enforcement_unblocked: {
    level: "warn",
    summary: "LiteLLM unblocked a key or team whose accounts are no longer depleted",
    whatToDo: "nothing",
  },
  enforcement_failed: {
    level: "error",
    summary: "a block or unblock did not reach LiteLLM; it is retried with backoff",
    whatToDo: "repeated: check that LiteLLM answers at LITELLM_ADMIN_URL and LITELLM_MASTER_KEY is right",
  },
  enforcement_principal_unknown: {
    level: "warn",
    summary: "LiteLLM says the key or team to block or unblock does not exist; the action is dropped, not retried",
    whatToDo: "a deleted key or team: nothing; a team still in use: check its id in LiteLLM",
  },
} as const satisfies Record<string, { level: "error" | "warn"; summary: string; whatToDo: string }>;

export type AlertName = keyof typeof ALERT_CATALOG;

type AlertValue = string | number | boolean | null | AlertValue[] | { [field: string]: AlertValue };
export type AlertFields = Record<string, AlertValue>;

export type Alert = { event: AlertName; fields: AlertFields };

export function emitAlert(logger: Logger, alert: Alert): void {
  const { level, summary } = ALERT_CATALOG[alert.event];
  logger[level]({ ...alert.fields, event: alert.event }, `${alert.event}: ${summary}`);
}
