import { sql } from "drizzle-orm";
import {
  type AnyPgColumn,
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  index,
  integer,
  jsonb,
  numeric,
  pgTable,
  primaryKey,
  serial,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import { MAX_CREDITS } from "./credit-bounds.js";
import { BUCKET_SOURCES, LEDGER_KINDS, TRANSFER_EXPIRATIONS } from "./ledger-kinds.js";

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();

// Every credit amount stays within what a JSON number holds exactly (±(2^53 − 1)).
const creditsWithinBound = (column: AnyPgColumn) =>
  sql`${column} between -${sql.raw(MAX_CREDITS.toString())} and ${sql.raw(MAX_CREDITS.toString())}`;

/**
 * One row per billing account; the balance moves only together with a ledger entry. The last
 * entry's sequence number is kept here, under the row lock every posting takes, so entries are
 * numbered without gaps.
 */
// No CHECK on the balance's bound here or on ledger entries: books from before the bound may
// hold more, and must still move toward zero (src/books/post-entries.ts enforces it).
export const accounts = pgTable("accounts", {
  id: text("id").primaryKey(),
  balanceCredits: bigint("balance_credits", { mode: "bigint" }).notNull().default(sql`0`),
  ledgerSeq: bigint("ledger_seq", { mode: "bigint" }).notNull().default(sql`0`),
  createdAt: createdAt(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/** A PostgreSQL transaction id (xid8), as text: 64 bits, never wrapping. */
const transactionId = customType<{ data: string; driverData: string }>({ dataType: () => "xid8" });

/**
 * A SHA-256 digest, stored as its 32 bytes (bytea) and read as lowercase hex, the text the
 * service hashes and compares: half the bytes of the hex text in every row that carries one.
 */
const sha256Digest = customType<{ data: string; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (hex) => Buffer.from(hex, "hex"),
  fromDriver: (bytes) => bytes.toString("hex"),
});

/**
 * Each price book receipts were priced with, by its hash: a receipt keeps the 4-byte id, not the
 * 64-character hash every receipt of the book would repeat.
 */
export const priceBooks = pgTable("price_books", {
  id: serial("id").primaryKey(),
  hash: text("hash").notNull(),
}, (table) => [uniqueIndex("price_books_hash_key").on(table.hash)]);

/** What one LiteLLM call was charged, exactly once per idempotency key. */
export const chargeReceipts = pgTable(
  "charge_receipts",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    idempotencyKey: text("idempotency_key").notNull(),
    billingAccountId: text("billing_account_id").notNull(),
    /** The account the caller named in spend_logs_metadata when a trusted source paid instead. */
    claimedBillingAccountId: text("claimed_billing_account_id"),
    model: text("model"),
    modelGroup: text("model_group"),
    pricingSource: text("pricing_source").$type<"free" | "cache_hit" | "price_book" | "reported_cost">().notNull(),
    /** Where the rates came from: price_book (the operator's), gateway (LiteLLM's for the call), cost_map. */
    rateStep: text("rate_step").$type<"price_book" | "gateway" | "cost_map">(),
    priceEntry: text("price_entry"),
    /** Why the charge is not simply the rates' cost (LiteLLM's reported cost, on_divergence). */
    pricingReason: text("pricing_reason"),
    /** LiteLLM's response_cost, as the exact decimal it stands for (15 significant digits). */
    reportedCostUsd: numeric("reported_cost_usd"),
    providerCostUsd: numeric("provider_cost_usd").notNull(),
    chargedCredits: bigint("charged_credits", { mode: "bigint" }).notNull(),
    promptTokens: integer("prompt_tokens").notNull(),
    completionTokens: integer("completion_tokens").notNull(),
    cacheReadTokens: integer("cache_read_tokens").notNull(),
    cacheWriteTokens: integer("cache_write_tokens").notNull(),
    reasoningTokens: integer("reasoning_tokens").notNull(),
    usageFingerprint: sha256Digest("usage_fingerprint").notNull(),
    /** The price book it was priced with (price_books.id). */
    priceBookId: integer("price_book_id").notNull(),
    eventTime: timestamp("event_time", { withTimezone: true }),
    createdAt: createdAt(),
    /**
     * The model as reports group it, where it differs from `model` as LiteLLM logged it: LiteLLM
     * 1.81 logs a Router call's model with its provider prefix (`openai/gpt-4o-mini`), 1.80 did not.
     */
    canonicalModel: text("canonical_model"),
    /** LiteLLM's own margin and provider discount on the call (its cost_breakdown): shown, never billed. */
    litellmMarginUsd: numeric("litellm_margin_usd"),
    litellmDiscountUsd: numeric("litellm_discount_usd"),
    /** The key (its hash) and team LiteLLM authenticated for the call, where each is an id: usage is reported by them. */
    keyHash: text("key_hash"),
    teamId: text("team_id"),
    /**
     * The transaction that wrote the receipt: the usage rollup takes the receipts of transactions
     * finished since its last run by this. NULL for receipts from before it (migration 0015 summed those).
     */
    xact: transactionId("xact").default(sql`pg_current_xact_id()`),
  },
  (table) => [
    uniqueIndex("charge_receipts_idempotency_key_key").on(table.idempotencyKey),
    // No index by account: an account's receipts are reached through its charge entries
    // (ledger_entries_account_seq_key, then the receipt by id), which every read of them has.
    // The gateway reconcile pages through a window's receipts by call time.
    index("charge_receipts_event_time_idx").on(table.eventTime),
    index("charge_receipts_xact_idx").on(table.xact),
    check("charge_receipts_credits_non_negative", sql`${table.chargedCredits} >= 0`),
    check("charge_receipts_credits_bounded", creditsWithinBound(table.chargedCredits)),
  ],
);

/**
 * What an account's calls came to in each UTC hour (of the call's time, else its charge's), by
 * model, key and team: derived from the receipts, summed from them by the workers' rollup (up to
 * usage_rollup_watermark), rebuilt from them by `ops usage rebuild` and checked against them by
 * `ops reconcile`.
 * A call without a model, key or team is counted under '' so that one key covers every row.
 * Stored with fillfactor 50 (migration 0015): each run of the rollup updates the current hour's
 * rows, and the room keeps those updates heap-only.
 */
export const usageHourly = pgTable(
  "usage_hourly",
  {
    billingAccountId: text("billing_account_id").notNull(),
    hour: timestamp("hour", { withTimezone: true }).notNull(),
    /** The receipt's canonical model (its model as LiteLLM logged it where that has no prefix to drop). */
    model: text("model").notNull(),
    keyHash: text("key_hash").notNull(),
    teamId: text("team_id").notNull(),
    calls: bigint("calls", { mode: "bigint" }).notNull(),
    /** Of the calls, by how their charge was decided: free (a free model or a cache hit), priced, or LiteLLM's reported cost. */
    freeCalls: bigint("free_calls", { mode: "bigint" }).notNull(),
    pricedCalls: bigint("priced_calls", { mode: "bigint" }).notNull(),
    reportedCalls: bigint("reported_calls", { mode: "bigint" }).notNull(),
    /** Prompt tokens as LiteLLM counts them, cached reads and cache writes included. */
    inputTokens: bigint("input_tokens", { mode: "bigint" }).notNull(),
    cachedTokens: bigint("cached_tokens", { mode: "bigint" }).notNull(),
    cacheWriteTokens: bigint("cache_write_tokens", { mode: "bigint" }).notNull(),
    /** Completion tokens, reasoning included. */
    outputTokens: bigint("output_tokens", { mode: "bigint" }).notNull(),
    reasoningTokens: bigint("reasoning_tokens", { mode: "bigint" }).notNull(),
    chargedCredits: bigint("charged_credits", { mode: "bigint" }).notNull(),
    pricedCredits: bigint("priced_credits", { mode: "bigint" }).notNull(),
    reportedCredits: bigint("reported_credits", { mode: "bigint" }).notNull(),
  },
  (table) => [
    // An account's usage over a time range, whatever it is grouped by.
    primaryKey({ columns: [table.billingAccountId, table.hour, table.model, table.keyHash, table.teamId] }),
    // Every account's usage over a time range (GET /v1/usage, the console's overview).
    index("usage_hourly_hour_idx").on(table.hour),
  ],
);

/**
 * How far usage_hourly has summed the receipts: every receipt of a transaction below `xact` (a
 * snapshot's xmin: each of them had finished) is in it, none at or above. One row.
 */
export const usageRollupWatermark = pgTable("usage_rollup_watermark", {
  id: boolean("id").primaryKey().default(true),
  xact: transactionId("xact").notNull(),
  rolledUpAt: timestamp("rolled_up_at", { withTimezone: true }).notNull().defaultNow(),
}, (table) => [check("usage_rollup_watermark_one_row", sql`${table.id}`)]);

/** Credits added to an account, idempotent by the caller's reference. */
export const grants = pgTable(
  "grants",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    billingAccountId: text("billing_account_id").notNull(),
    reference: text("reference").notNull(),
    credits: bigint("credits", { mode: "bigint" }).notNull(),
    reason: text("reason"),
    createdAt: createdAt(),
    /** When what is left of it leaves the balance (an `expiry` entry); never when null. */
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    /** Consumption order: lower first (0–100). */
    priority: integer("priority").notNull().default(50),
  },
  (table) => [
    uniqueIndex("grants_reference_key").on(table.reference),
    check("grants_priority_range", sql`${table.priority} between 0 and 100`),
    check("grants_credits_positive", sql`${table.credits} > 0`),
    check("grants_credits_bounded", creditsWithinBound(table.credits)),
  ],
);

/**
 * A charge that is not a model call (a seat fee, a settlement), idempotent by the caller's
 * reference; never refused for lack of credit. Its ledger entry is of kind `debit`.
 */
export const debits = pgTable(
  "debits",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    billingAccountId: text("billing_account_id").notNull(),
    reference: text("reference").notNull(),
    credits: bigint("credits", { mode: "bigint" }).notNull(),
    reason: text("reason").notNull(),
    createdAt: createdAt(),
  },
  (table) => [
    uniqueIndex("debits_reference_key").on(table.reference),
    check("debits_credits_positive", sql`${table.credits} > 0`),
    check("debits_credits_bounded", creditsWithinBound(table.credits)),
  ],
);

/**
 * Credits moved from one account to another, idempotent by the caller's reference. Its ledger
 * entries are a `transfer_out` on the source and a `transfer_in` on the destination.
 */
export const transfers = pgTable(
  "transfers",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    fromAccountId: text("from_account_id").notNull(),
    toAccountId: text("to_account_id").notNull(),
    reference: text("reference").notNull(),
    credits: bigint("credits", { mode: "bigint" }).notNull(),
    expiration: text("expiration", { enum: TRANSFER_EXPIRATIONS }).notNull(),
    /** The destination bucket's expiry when `expiration` is fixed; null otherwise. */
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    allowOverdraft: boolean("allow_overdraft").notNull(),
    createdAt: createdAt(),
  },
  (table) => [
    uniqueIndex("transfers_reference_key").on(table.reference),
    check("transfers_credits_positive", sql`${table.credits} > 0`),
    check("transfers_credits_bounded", creditsWithinBound(table.credits)),
    check("transfers_between_accounts", sql`${table.fromAccountId} <> ${table.toAccountId}`),
    check("transfers_fixed_has_expiry", sql`(${table.expiration} = 'fixed') = (${table.expiresAt} is not null)`),
  ],
);

/**
 * A charge given back in whole or in part, idempotent by the caller's reference; the reversals
 * of one receipt never sum past its charge. Its ledger entry is of kind `reversal`.
 */
export const reversals = pgTable(
  "reversals",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    /** The charge receipt it gives back (charge_receipts.id) and, as there, the account it paid. */
    receiptId: bigint("receipt_id", { mode: "bigint" }).notNull(),
    billingAccountId: text("billing_account_id").notNull(),
    reference: text("reference").notNull(),
    credits: bigint("credits", { mode: "bigint" }).notNull(),
    reason: text("reason").notNull(),
    createdAt: createdAt(),
  },
  (table) => [
    uniqueIndex("reversals_reference_key").on(table.reference),
    index("reversals_receipt_idx").on(table.receiptId),
    check("reversals_credits_positive", sql`${table.credits} > 0`),
    check("reversals_credits_bounded", creditsWithinBound(table.credits)),
  ],
);

/**
 * Every change of a balance. Per account the entries form a chain, numbered 1, 2, … by
 * `seq` without gaps: each balance_before is the previous balance_after, the balance is their
 * sum, and each `hash` covers the previous entry's hash and this entry's content
 * (src/books/entry-hash.ts), so an edit, insertion or deletion breaks the chain after it.
 * `created_at` is the posting time, taken under the account's lock.
 */
export const ledgerEntries = pgTable(
  "ledger_entries",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    billingAccountId: text("billing_account_id").notNull(),
    kind: text("kind", { enum: LEDGER_KINDS }).notNull(),
    amountCredits: bigint("amount_credits", { mode: "bigint" }).notNull(),
    balanceBefore: bigint("balance_before", { mode: "bigint" }).notNull(),
    balanceAfter: bigint("balance_after", { mode: "bigint" }).notNull(),
    reference: text("reference").notNull(),
    receiptId: bigint("receipt_id", { mode: "bigint" }),
    grantId: bigint("grant_id", { mode: "bigint" }),
    /** The source row of the kinds after charge and grant: a debit, transfer, reversal, or (expiry) the bucket. */
    sourceId: bigint("source_id", { mode: "bigint" }),
    seq: bigint("seq", { mode: "bigint" }).notNull(),
    hash: sha256Digest("hash").notNull(),
    createdAt: createdAt(),
  },
  (table) => [
    // Per account, sequence order is id order and posting-time order (posting times never run
    // backwards per account): the one index serves the chain, the ledger pages and the invoices.
    uniqueIndex("ledger_entries_account_seq_key").on(table.billingAccountId, table.seq),
    // Partial: each entry has one source column set, and an index of the others' NULLs would
    // cost every entry an index write no read uses.
    uniqueIndex("ledger_entries_receipt_key").on(table.receiptId).where(sql`${table.receiptId} is not null`),
    uniqueIndex("ledger_entries_grant_key").on(table.grantId).where(sql`${table.grantId} is not null`),
    // One entry of each kind per source: a bucket expires once, a debit posts once.
    uniqueIndex("ledger_entries_source_key").on(table.kind, table.sourceId).where(sql`${table.sourceId} is not null`),
    check("ledger_entries_kind", sql`${table.kind} in (${sql.raw(LEDGER_KINDS.map((kind) => `'${kind}'`).join(", "))})`),
    check(
      "ledger_entries_arithmetic",
      sql`${table.balanceAfter} = ${table.balanceBefore} + ${table.amountCredits}`,
    ),
    check(
      "ledger_entries_source",
      sql`(${table.kind} = 'charge' and ${table.receiptId} is not null and ${table.grantId} is null and ${table.sourceId} is null)
        or (${table.kind} = 'grant' and ${table.grantId} is not null and ${table.receiptId} is null and ${table.sourceId} is null)
        or (${table.kind} not in ('charge', 'grant') and ${table.sourceId} is not null and ${table.receiptId} is null and ${table.grantId} is null)`,
    ),
  ],
);

/**
 * Live credit: what an inflow (grant, transfer in, reversal) left after paying the account's
 * debt, spent by outflows in consumption order (priority, soonest expiry, oldest). While the
 * account's balance is positive it is the sum of its buckets' remaining credits; while it is
 * not, every bucket is empty. `opening` buckets hold the balances of books from before buckets.
 */
// No CHECK on the bound: an opening bucket holds what a balance from before the bound holds.
// Stored with fillfactor 30 (migration 0014, which drizzle cannot express): the room keeps a hot
// bucket's per-batch updates heap-only.
export const creditBuckets = pgTable(
  "credit_buckets",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    billingAccountId: text("billing_account_id").notNull(),
    source: text("source", { enum: BUCKET_SOURCES }).notNull(),
    /** Its grant, transfer or reversal; null for an opening bucket. */
    sourceId: bigint("source_id", { mode: "bigint" }),
    priority: integer("priority").notNull().default(50),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    /** What the bucket started with (the inflow less the debt it paid). */
    credits: bigint("credits", { mode: "bigint" }).notNull(),
    remainingCredits: bigint("remaining_credits", { mode: "bigint" }).notNull(),
    /**
     * Whether it has credits left, kept by the database. The partial indexes test this rather than
     * remaining_credits itself: a column in an index's predicate bars heap-only updates, and
     * every charge updates remaining_credits, so the hot buckets would bloat every index.
     */
    live: boolean("live").generatedAlwaysAs(sql`remaining_credits > 0`).notNull(),
    expiredAt: timestamp("expired_at", { withTimezone: true }),
    /** When `credits_expiring` was raised for it (once per bucket). */
    expiringAlertedAt: timestamp("expiring_alerted_at", { withTimezone: true }),
    createdAt: createdAt(),
  },
  (table) => [
    // The live buckets of an account in consumption order (ASC puts never-expiring last).
    index("credit_buckets_live_idx")
      .on(table.billingAccountId, table.priority, table.expiresAt, table.createdAt, table.id)
      .where(sql`${table.live}`),
    // The expiry sweep's and the expiring alert's scan.
    index("credit_buckets_expiry_idx").on(table.expiresAt).where(sql`${table.live} and ${table.expiredAt} is null`),
    // Every bucket of an account, for reconcile and the reads.
    index("credit_buckets_account_idx").on(table.billingAccountId, table.id),
    // A transfer's or reversal's buckets.
    index("credit_buckets_source_idx").on(table.source, table.sourceId),
    check("credit_buckets_source", sql`${table.source} in (${sql.raw(BUCKET_SOURCES.map((source) => `'${source}'`).join(", "))})`),
    check("credit_buckets_priority_range", sql`${table.priority} between 0 and 100`),
    check("credit_buckets_remaining", sql`${table.credits} > 0 and ${table.remainingCredits} between 0 and ${table.credits}`),
    check("credit_buckets_expired_empty", sql`${table.expiredAt} is null or ${table.remainingCredits} = 0`),
  ],
);

/**
 * Which buckets an outflow entry drew from, and how much: only the part buckets covered (a
 * charge on an account with no live credit writes none). A bucket's remaining credits are its
 * credits less its allocations; a reversal's return is a negative allocation.
 */
export const bucketAllocations = pgTable(
  "bucket_allocations",
  {
    ledgerEntryId: bigint("ledger_entry_id", { mode: "bigint" }).notNull(),
    bucketId: bigint("bucket_id", { mode: "bigint" }).notNull(),
    credits: bigint("credits", { mode: "bigint" }).notNull(),
  },
  (table) => [
    // No index by bucket: one more index write on every charge, and reconcile reaches a bucket's
    // allocations through its account's entries, which it reads anyway.
    primaryKey({ columns: [table.ledgerEntryId, table.bucketId] }),
    check("bucket_allocations_credits_nonzero", sql`${table.credits} <> 0`),
  ],
);

/** Items the pipeline refused, kept (without prompt or response text) for inspection and replay. */
export const quarantine = pgTable(
  "quarantine",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    fingerprint: text("fingerprint").notNull(),
    stage: text("stage", { enum: ["receiver", "worker"] }).notNull(),
    reason: text("reason").notNull(),
    idempotencyKey: text("idempotency_key"),
    detail: jsonb("detail"),
    item: jsonb("item").notNull(),
    createdAt: createdAt(),
    replayedAt: timestamp("replayed_at", { withTimezone: true }),
  },
  (table) => [
    uniqueIndex("quarantine_fingerprint_key").on(table.fingerprint),
    index("quarantine_reason_idx").on(table.reason, table.id),
    // The gateway reconcile looks pending items up by key.
    index("quarantine_pending_key_idx").on(table.idempotencyKey).where(sql`${table.replayedAt} is null`),
  ],
);

/**
 * Alerts decided inside the transaction that caused them, delivered to the log after commit; an
 * undelivered row survives a crash and is delivered by the sweeper. One row holds all the alerts of
 * one transaction, so a batch of charges pays for one row and one delivery mark, however many
 * alerts it raised; a large batch's array is compressed into TOAST. Delivered rows are pruned after
 * ALERT_RETENTION.
 */
export const alertOutbox = pgTable(
  "alert_outbox",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    // [{event, fields}, ...] in the order the transaction raised them.
    alerts: jsonb("alerts").notNull(),
    // The clock at insert, not the transaction's start: a charge that waited long for a busy
    // account's lock must not look stranded to the sweeper the moment it commits.
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().default(sql`clock_timestamp()`),
    deliveredAt: timestamp("delivered_at", { withTimezone: true }),
  },
  (table) => [
    index("alert_outbox_undelivered_idx").on(table.id).where(sql`${table.deliveredAt} is null`),
    // Pruning takes delivered rows oldest delivery first.
    index("alert_outbox_delivered_idx").on(table.deliveredAt).where(sql`${table.deliveredAt} is not null`),
  ],
);

/** How far the gateway backfill has checked LiteLLM's spend log: the next run starts there (less an overlap). */
export const gatewayWatermarks = pgTable("gateway_watermarks", {
  name: text("name").primaryKey(),
  watermark: timestamp("watermark", { withTimezone: true }).notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  // When the watermark's lag last crossed half of LiteLLM's spend-log retention (alerted once);
  // NULL once it is back under, so the next crossing alerts again.
  retentionWarnedAt: timestamp("retention_warned_at", { withTimezone: true }),
});

const at = (name: string) => timestamp(name, { withTimezone: true });
const principalKind = () => text("kind", { enum: ["key", "team"] }).notNull();

/** Which LiteLLM keys (by hash) and teams paid for each account's calls: the only principals enforcement may block. */
export const accountPrincipals = pgTable(
  "account_principals",
  {
    billingAccountId: text("billing_account_id").notNull(),
    kind: principalKind(),
    /** The key's hash (metadata.user_api_key_hash) or the team's id. */
    principal: text("principal").notNull(),
    firstUsedAt: at("first_used_at").notNull(),
    lastUsedAt: at("last_used_at").notNull(),
  },
  (table) => [
    primaryKey({ columns: [table.billingAccountId, table.kind, table.principal] }),
    // Every account a principal paid for, when deciding whether it stays blocked.
    index("account_principals_principal_idx").on(table.kind, table.principal),
  ],
);

/**
 * Each account's enforcement state, once one was decided: blocked at the gateway, unblocked, or
 * held open by an operator (not blocked again until its balance has risen above the threshold).
 */
export const enforcementAccounts = pgTable("enforcement_accounts", {
  billingAccountId: text("billing_account_id").primaryKey(),
  state: text("state", { enum: ["blocked", "unblocked", "held_open"] }).notNull(),
  changedAt: at("changed_at").notNull().defaultNow(),
});

/** What the gateway was last told about each principal (or is about to be: see enforcement_actions). */
export const enforcementPrincipals = pgTable(
  "enforcement_principals",
  {
    kind: principalKind(),
    principal: text("principal").notNull(),
    state: text("state", { enum: ["blocked", "unblocked"] }).notNull(),
    changedAt: at("changed_at").notNull().defaultNow(),
  },
  (table) => [primaryKey({ columns: [table.kind, table.principal] })],
);

/** What enforcement asks LiteLLM to do to a key or team. */
export const ENFORCEMENT_ACTIONS = ["block", "unblock"] as const;

/** The outbox of calls to LiteLLM's admin API, numbered in the order they were decided. */
export const enforcementActions = pgTable(
  "enforcement_actions",
  {
    id: bigserial("id", { mode: "bigint" }).primaryKey(),
    kind: principalKind(),
    principal: text("principal").notNull(),
    action: text("action", { enum: ENFORCEMENT_ACTIONS }).notNull(),
    /** The account whose balance (or operator) decided it. */
    billingAccountId: text("billing_account_id").notNull(),
    createdAt: at("created_at").notNull().default(sql`clock_timestamp()`),
    attempts: integer("attempts").notNull().default(0),
    /** Calls started; more than `attempts` when a deliverer died mid-call, whose call may still land. */
    sends: integer("sends").notNull().default(0),
    nextAttemptAt: at("next_attempt_at").notNull().defaultNow(),
    lastError: text("last_error"),
    /** An attempt ended with no answer after the request may have reached LiteLLM: it may still land, late. */
    uncertain: boolean("uncertain").notNull().default(false),
    /** Sends the principal's state as it then stands, once its decided actions are done: after an uncertain attempt, so a late one cannot have the last word. */
    resend: boolean("resend").notNull().default(false),
    doneAt: at("done_at"),
    /** done: the gateway confirmed it; not_found: the gateway does not know the principal. */
    outcome: text("outcome", { enum: ["done", "not_found"] }),
  },
  (table) => [
    index("enforcement_actions_pending_idx").on(table.id).where(sql`${table.doneAt} is null`),
    index("enforcement_actions_account_idx").on(table.billingAccountId, table.id),
  ],
);
