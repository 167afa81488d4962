ALTER TABLE "charge_receipts" ADD COLUMN "rate_step" text;--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "pricing_reason" text;--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "reported_cost_usd" numeric;