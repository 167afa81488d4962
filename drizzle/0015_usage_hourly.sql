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
CREATE INDEX "usage_hourly_hour_idx" ON "usage_hourly" USING btree ("hour");--> statement-breakpoint
-- Every charge batch updates the current hour's row of each account, key and team it charges. With
-- room left on the page the update stays heap-only (no index entry written) and the page prunes its
-- dead versions itself; a full page moves it, bloating table and indexes until autovacuum comes by.
-- Measured with bench/record-batch.ts: see docs/guides/performance.md.
ALTER TABLE "usage_hourly" SET (fillfactor = 50);
--> statement-breakpoint
-- The receipts already there, as the workers add each batch's (src/books/usage-rollup.ts): an
-- upgraded deployment starts with usage_hourly equal to them. Receipts an old worker writes after
-- this are not in it: `ops usage rebuild` once the old workers are gone (docs/reference/ledger.md).
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
