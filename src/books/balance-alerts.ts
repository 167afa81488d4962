import type { Alert, AlertFields } from "./alert-catalog.js";

export type BalanceMove = {
  billingAccountId: string;
  balanceBefore: bigint;
  balanceAfter: bigint;
  /**
   * What moved the balance, as its alert lines name it: a usage charge's `idempotency_key`,
   * `receipt_id` and `charged_credits`; an outflow of another kind its `entry_kind`, `reference`
   * and amount.
   */
  cause: AlertFields;
};

/**
 * What one committed outflow (a charge, debit, transfer out or expiry) crossed. Each alert is decided from the charge's own
 * before and after, so it fires once per crossing and a grant that lifts the balance
 * back above a line re-arms it without any stored state.
 */
export function balanceAlertsFor(move: BalanceMove, lowBalanceThresholds: readonly bigint[]): Alert[] {
  const { balanceBefore: before, balanceAfter: after } = move;
  const fields = {
    billing_account_id: move.billingAccountId,
    ...move.cause,
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
