/**
 * Every kind of ledger entry, with its one-line meaning (docs/reference/ledger.md lists the same). An
 * inflow pays the account's debt first and only the rest becomes a live credit bucket; an
 * outflow draws from the live buckets in consumption order, and what none covers is debt.
 */
export const LEDGER_KIND_CATALOG = {
  charge: { flow: "out", summary: "a priced LiteLLM call (its receipt)" },
  grant: { flow: "in", summary: "credits added, once per reference (its grant)" },
  expiry: { flow: "out", summary: "what was left of a bucket when its expires_at passed (the bucket)" },
  debit: { flow: "out", summary: "a charge that is not a model call: a seat fee, a settlement (its debit)" },
  transfer_out: { flow: "out", summary: "credits sent to another account (its transfer)" },
  transfer_in: { flow: "in", summary: "credits received from another account (its transfer)" },
  reversal: { flow: "in", summary: "a charge given back in whole or in part (its reversal)" },
} as const satisfies Record<string, { flow: "in" | "out"; summary: string }>;

export type LedgerKind = keyof typeof LEDGER_KIND_CATALOG;

export const LEDGER_KINDS = Object.keys(LEDGER_KIND_CATALOG) as [LedgerKind, ...LedgerKind[]];

/** Where a credit bucket's credits came from: an inflow, or (`opening`) a balance from before buckets. */
export const BUCKET_SOURCES = ["grant", "transfer_in", "reversal", "opening"] as const;

export type BucketSource = (typeof BUCKET_SOURCES)[number];

/**
 * How a transfer's credits expire at the destination: `preserve` as the source buckets it drew did
 * (their expiries and priorities; the overdraft part evergreen), `none` never, `fixed` at its expires_at.
 */
export const TRANSFER_EXPIRATIONS = ["preserve", "none", "fixed"] as const;

export type TransferExpiration = (typeof TRANSFER_EXPIRATIONS)[number];
