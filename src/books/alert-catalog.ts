import type { Logger } from "pino";

/** Every alert the alerting pipeline may receive: one pino line each, `event` set to the name. */
export const ALERT_CATALOG = {
  inv_post_call_negative_balance: { level: "error", summary: "a committed charge left the balance below zero" },
  balance_depleted: { level: "warn", summary: "a charge (or debit, transfer out, expiry) took the balance from above zero to zero or below" },
  low_balance: { level: "warn", summary: "a charge (or debit, transfer out, expiry) took the balance below a low-balance threshold" },
  credits_expiring: {
    level: "warn",
    summary: "a credit bucket with credits left expires within CREDITS_EXPIRING_WITHIN (once per bucket)",
  },
  credits_expired: { level: "warn", summary: "a credit bucket expired with credits left; they left the balance as an expiry entry" },
  inv_unpriced_model: { level: "error", summary: "an event could not be priced and was quarantined" },
  receipt_conflict: { level: "warn", summary: "a call (request id and time) arrived again with different usage; the first stands" },
  response_id_reused: {
    level: "warn",
    summary: "a request id already charged for one call came with another call; that call is charged under a key of its own",
  },
  event_quarantined: { level: "warn", summary: "an item was quarantined" },
  inv_gateway_unbilled: {
    level: "warn",
    summary: "the gateway backfill billed calls LiteLLM recorded whose callbacks never arrived",
  },
  gateway_backfill_behind: {
    level: "warn",
    summary: "the gateway backfill's watermark lags by half or more of LiteLLM's spend-log retention: calls it has not read will soon be deleted",
  },
  inv_price_divergence: {
    level: "warn",
    summary: "the exact cost at the gateway's own rates differs from LiteLLM's reported cost by a credit or more",
  },
  enforcement_blocked: { level: "warn", summary: "LiteLLM blocked a key or team of a depleted account" },
  enforcement_unblocked: { level: "warn", summary: "LiteLLM unblocked a key or team whose accounts are no longer depleted" },
  enforcement_failed: {
    level: "error",
    summary: "a block or unblock did not reach LiteLLM; it is retried with backoff",
  },
  enforcement_principal_unknown: {
    level: "warn",
    summary: "LiteLLM says the key or team to block or unblock does not exist; the action is dropped, not retried",
  },
} as const satisfies Record<string, { level: "error" | "warn"; summary: string }>;

export type AlertName = keyof typeof ALERT_CATALOG;

type AlertValue = string | number | boolean | null | AlertValue[] | { [field: string]: AlertValue };
export type AlertFields = Record<string, AlertValue>;

export type Alert = { event: AlertName; fields: AlertFields };

export function emitAlert(logger: Logger, alert: Alert): void {
  const { level, summary } = ALERT_CATALOG[alert.event];
  logger[level]({ ...alert.fields, event: alert.event }, `${alert.event}: ${summary}`);
}
