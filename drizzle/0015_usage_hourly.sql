CREATE TABLE "usage_hourly" (
	"billing_account_id" text NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"model" text NOT NULL,
	"key_hash" text NOT NULL,
	"team_id" text NOT NULL,
	"calls" bigint NOT NULL,
	"free_calls" bigint NOT NULL,
	"priced_calls" bigint NOT NULL,
	"reported_calls" bigint NOT NULL,
	"input_tokens" bigint NOT NULL,
	"cached_tokens" bigint NOT NULL,
	"cache_write_tokens" bigint NOT NULL,
	"output_tokens" bigint NOT NULL,
	"reasoning_tokens" bigint NOT NULL,
	"charged_credits" bigint NOT NULL,
	"priced_credits" bigint NOT NULL,
	"reported_credits" bigint NOT NULL,
	CONSTRAINT "usage_hourly_billing_account_id_hour_model_key_hash_team_id_pk" PRIMARY KEY("billing_account_id","hour","model","key_hash","team_id")
);
--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "key_hash" text;--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "team_id" text;--> statement-breakpoint
CREATE INDEX "usage_hourly_hour_idx" ON "usage_hourly" USING btree ("hour");