CREATE TABLE "accounts" (
	"id" text PRIMARY KEY NOT NULL,
	"balance_credits" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "alert_outbox" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"event" text NOT NULL,
	"fields" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"delivered_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "charge_receipts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"idempotency_key" text NOT NULL,
	"billing_account_id" text NOT NULL,
	"model" text,
	"model_group" text,
	"pricing_source" text NOT NULL,
	"price_entry" text,
	"provider_cost_usd" numeric NOT NULL,
	"charged_credits" bigint NOT NULL,
	"prompt_tokens" integer NOT NULL,
	"completion_tokens" integer NOT NULL,
	"cache_read_tokens" integer NOT NULL,
	"cache_write_tokens" integer NOT NULL,
	"reasoning_tokens" integer NOT NULL,
	"usage_fingerprint" text NOT NULL,
	"price_book_hash" text NOT NULL,
	"event_time" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "charge_receipts_credits_non_negative" CHECK ("charge_receipts"."charged_credits" >= 0)
);
--> statement-breakpoint
CREATE TABLE "grants" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"billing_account_id" text NOT NULL,
	"reference" text NOT NULL,
	"credits" bigint NOT NULL,
	"reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "grants_credits_positive" CHECK ("grants"."credits" > 0)
);
--> statement-breakpoint
CREATE TABLE "ledger_entries" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"billing_account_id" text NOT NULL,
	"kind" text NOT NULL,
	"amount_credits" bigint NOT NULL,
	"balance_before" bigint NOT NULL,
	"balance_after" bigint NOT NULL,
	"reference" text NOT NULL,
	"receipt_id" bigint,
	"grant_id" bigint,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "ledger_entries_kind" CHECK ("ledger_entries"."kind" in ('charge', 'grant')),
	CONSTRAINT "ledger_entries_arithmetic" CHECK ("ledger_entries"."balance_after" = "ledger_entries"."balance_before" + "ledger_entries"."amount_credits"),
	CONSTRAINT "ledger_entries_source" CHECK (("ledger_entries"."kind" = 'charge' and "ledger_entries"."receipt_id" is not null and "ledger_entries"."grant_id" is null)
        or ("ledger_entries"."kind" = 'grant' and "ledger_entries"."grant_id" is not null and "ledger_entries"."receipt_id" is null))
);
--> statement-breakpoint
CREATE TABLE "quarantine" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"fingerprint" text NOT NULL,
	"stage" text NOT NULL,
	"reason" text NOT NULL,
	"idempotency_key" text,
	"detail" jsonb,
	"item" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"replayed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "alert_outbox_undelivered_idx" ON "alert_outbox" USING btree ("id") WHERE "alert_outbox"."delivered_at" is null;--> statement-breakpoint
CREATE UNIQUE INDEX "charge_receipts_idempotency_key_key" ON "charge_receipts" USING btree ("idempotency_key");--> statement-breakpoint
CREATE INDEX "charge_receipts_account_idx" ON "charge_receipts" USING btree ("billing_account_id","id");--> statement-breakpoint
CREATE UNIQUE INDEX "grants_reference_key" ON "grants" USING btree ("reference");--> statement-breakpoint
CREATE INDEX "ledger_entries_account_idx" ON "ledger_entries" USING btree ("billing_account_id","id");--> statement-breakpoint
CREATE INDEX "ledger_entries_account_created_idx" ON "ledger_entries" USING btree ("billing_account_id","created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_receipt_key" ON "ledger_entries" USING btree ("receipt_id");--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_grant_key" ON "ledger_entries" USING btree ("grant_id");--> statement-breakpoint
CREATE UNIQUE INDEX "quarantine_fingerprint_key" ON "quarantine" USING btree ("fingerprint");--> statement-breakpoint
CREATE INDEX "quarantine_reason_idx" ON "quarantine" USING btree ("reason","id");