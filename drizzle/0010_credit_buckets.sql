CREATE TABLE "bucket_allocations" (
	"ledger_entry_id" bigint NOT NULL,
	"bucket_id" bigint NOT NULL,
	"credits" bigint NOT NULL,
	CONSTRAINT "bucket_allocations_ledger_entry_id_bucket_id_pk" PRIMARY KEY("ledger_entry_id","bucket_id"),
	CONSTRAINT "bucket_allocations_credits_nonzero" CHECK ("bucket_allocations"."credits" <> 0)
);
--> statement-breakpoint
CREATE TABLE "credit_buckets" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"billing_account_id" text NOT NULL,
	"source" text NOT NULL,
	"source_id" bigint,
	"priority" integer DEFAULT 50 NOT NULL,
	"expires_at" timestamp with time zone,
	"credits" bigint NOT NULL,
	"remaining_credits" bigint NOT NULL,
	"expired_at" timestamp with time zone,
	"expiring_alerted_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "credit_buckets_source" CHECK ("credit_buckets"."source" in ('grant', 'transfer_in', 'reversal', 'opening')),
	CONSTRAINT "credit_buckets_priority_range" CHECK ("credit_buckets"."priority" between 0 and 100),
	CONSTRAINT "credit_buckets_remaining" CHECK ("credit_buckets"."credits" > 0 and "credit_buckets"."remaining_credits" between 0 and "credit_buckets"."credits"),
	CONSTRAINT "credit_buckets_expired_empty" CHECK ("credit_buckets"."expired_at" is null or "credit_buckets"."remaining_credits" = 0)
);
--> statement-breakpoint
ALTER TABLE "ledger_entries" DROP CONSTRAINT "ledger_entries_kind";--> statement-breakpoint
ALTER TABLE "ledger_entries" DROP CONSTRAINT "ledger_entries_source";--> statement-breakpoint
ALTER TABLE "grants" ADD COLUMN "expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "grants" ADD COLUMN "priority" integer DEFAULT 50 NOT NULL;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD COLUMN "source_id" bigint;--> statement-breakpoint
CREATE INDEX "bucket_allocations_bucket_idx" ON "bucket_allocations" USING btree ("bucket_id");--> statement-breakpoint
CREATE INDEX "credit_buckets_live_idx" ON "credit_buckets" USING btree ("billing_account_id","priority","expires_at","created_at","id") WHERE "credit_buckets"."remaining_credits" > 0;--> statement-breakpoint
CREATE INDEX "credit_buckets_expiry_idx" ON "credit_buckets" USING btree ("expires_at") WHERE "credit_buckets"."remaining_credits" > 0 and "credit_buckets"."expired_at" is null;--> statement-breakpoint
CREATE INDEX "credit_buckets_account_idx" ON "credit_buckets" USING btree ("billing_account_id","id");--> statement-breakpoint
CREATE INDEX "credit_buckets_source_idx" ON "credit_buckets" USING btree ("source","source_id");--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_source_key" ON "ledger_entries" USING btree ("kind","source_id") WHERE "ledger_entries"."source_id" is not null;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_priority_range" CHECK ("grants"."priority" between 0 and 100);--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD CONSTRAINT "ledger_entries_kind" CHECK ("ledger_entries"."kind" in ('charge', 'grant', 'expiry', 'debit', 'transfer_out', 'transfer_in', 'reversal'));--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD CONSTRAINT "ledger_entries_source" CHECK (("ledger_entries"."kind" = 'charge' and "ledger_entries"."receipt_id" is not null and "ledger_entries"."grant_id" is null and "ledger_entries"."source_id" is null)
        or ("ledger_entries"."kind" = 'grant' and "ledger_entries"."grant_id" is not null and "ledger_entries"."receipt_id" is null and "ledger_entries"."source_id" is null)
        or ("ledger_entries"."kind" not in ('charge', 'grant') and "ledger_entries"."source_id" is not null and "ledger_entries"."receipt_id" is null and "ledger_entries"."grant_id" is null));--> statement-breakpoint

-- Books from before buckets: each account's positive balance becomes one evergreen bucket, so the
-- balance is its live buckets less its debt from here on (src/platform/db/ledger-kinds.ts).
INSERT INTO "credit_buckets" ("billing_account_id", "source", "credits", "remaining_credits")
SELECT "id", 'opening', "balance_credits", "balance_credits" FROM "accounts" WHERE "balance_credits" > 0;
