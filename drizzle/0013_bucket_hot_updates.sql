DROP INDEX "bucket_allocations_bucket_idx";--> statement-breakpoint
DROP INDEX "credit_buckets_live_idx";--> statement-breakpoint
DROP INDEX "credit_buckets_expiry_idx";--> statement-breakpoint
ALTER TABLE "credit_buckets" ADD COLUMN "live" boolean GENERATED ALWAYS AS (remaining_credits > 0) STORED NOT NULL;--> statement-breakpoint
CREATE INDEX "credit_buckets_live_idx" ON "credit_buckets" USING btree ("billing_account_id","priority","expires_at","created_at","id") WHERE "credit_buckets"."live";--> statement-breakpoint
CREATE INDEX "credit_buckets_expiry_idx" ON "credit_buckets" USING btree ("expires_at") WHERE "credit_buckets"."live" and "credit_buckets"."expired_at" is null;