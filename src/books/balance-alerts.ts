import type { Alert } from "./alert-catalog.js";

export type BalanceMove = {
  billingAccountId: string;
  idempotencyKey: string;
  receiptId: string;
  chargedCredits: bigint;
  balanceBefore: bigint;
  balanceAfter: bigint;
};

/**
 * What one committed charge crossed. Each alert is decided from the charge's own
 * before and after, so it fires once per crossing and a grant that lifts the balance
 * back above a line re-arms it without any stored state.
 */
export function balanceAlertsFor(move: BalanceMove, lowBalanceThresholds: readonly bigint[]): Alert[] {
  const { balanceBefore: before, balanceAfter: after } = move;
  const fields = {
    billing_account_id: move.billingAccountId,
    idempotency_key: move.idempotencyKey,
    receipt_id: move.receiptId,
    charged_credits: Number(move.chargedCredits),
    balance_before: Number(before),
    balance_after: Number(after),
    crossed_zero: before >= 0n && after < 0n,
  };
  const alerts: Alert[] = [];
  if (after < 0n) alerts.push({ event: "inv_post_call_negative_balance", fields });
  if (before > 0n && after <= 0n) alerts.push({ event: "balance_depleted", fields });
  for (const threshold of lowBalanceThresholds) {
    if (before >= threshold && after < threshold) {
      alerts.push({ event: "low_balance", fields: { ...fields, threshold: Number(threshold) } });
    }
  }
  return alerts;
}
