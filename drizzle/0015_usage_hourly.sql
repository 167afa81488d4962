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
CREATE TABLE "usage_rollup_watermark" (
	"id" boolean PRIMARY KEY DEFAULT true NOT NULL,
	"xact" "xid8" NOT NULL,
	"rolled_up_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "usage_rollup_watermark_one_row" CHECK ("usage_rollup_watermark"."id")
);
--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "key_hash" text;--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "team_id" text;--> statement-breakpoint
-- Edited by hand: the default is set apart so that the receipts already there keep xact NULL (with
-- it in ADD COLUMN, every one would get this migration's id and be summed again by the rollup).
ALTER TABLE "charge_receipts" ADD COLUMN "xact" "xid8";--> statement-breakpoint
ALTER TABLE "charge_receipts" ALTER COLUMN "xact" SET DEFAULT pg_current_xact_id();--> statement-breakpoint
CREATE INDEX "usage_hourly_hour_idx" ON "usage_hourly" USING btree ("hour");--> statement-breakpoint
CREATE INDEX "charge_receipts_xact_idx" ON "charge_receipts" USING btree ("xact");--> statement-breakpoint
-- Every run of the rollup updates the current hour's row of each account, key and team charged. With
-- room left on the page the update stays heap-only (no index entry written) and the page prunes its
-- dead versions itself; a full page moves it, bloating table and indexes until autovacuum comes by.
-- Measured with bench/record-batch.ts: see docs/guides/performance.md.
ALTER TABLE "usage_hourly" SET (fillfactor = 50);
--> statement-breakpoint
-- The receipts already there (xact NULL), as the rollup sums receipts (src/books/usage-rollup.ts):
-- an upgraded deployment starts with usage_hourly equal to them. A receipt written after this has
-- its xact, the old version's workers' too, and the rollup sums it from the watermark below.
INSERT INTO "usage_hourly"
SELECT r.billing_account_id, date_trunc('hour', coalesce(r.event_time, r.created_at), 'UTC'),
       coalesce(r.canonical_model, r.model, ''), coalesce(r.key_hash, ''), coalesce(r.team_id, ''),
       count(*),
       count(*) FILTER (WHERE r.pricing_source IN ('free', 'cache_hit')),
       count(*) FILTER (WHERE r.pricing_source = 'price_book'),
       count(*) FILTER (WHERE r.pricing_source = 'reported_cost'),
       sum(r.prompt_tokens), sum(r.cache_read_tokens), sum(r.cache_write_tokens), sum(r.completion_tokens), sum(r.reasoning_tokens),
       sum(r.charged_credits),
       coalesce(sum(r.charged_credits) FILTER (WHERE r.pricing_source = 'price_book'), 0),
       coalesce(sum(r.charged_credits) FILTER (WHERE r.pricing_source = 'reported_cost'), 0)
FROM "charge_receipts" r
GROUP BY 1, 2, 3, 4, 5;
--> statement-breakpoint
-- Every transaction that can write a receipt with an xact is at or above the oldest one running now.
INSERT INTO "usage_rollup_watermark" (xact) VALUES (pg_snapshot_xmin(pg_current_snapshot()));
