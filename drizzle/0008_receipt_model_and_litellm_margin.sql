ALTER TABLE "charge_receipts" ADD COLUMN "canonical_model" text;--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "litellm_margin_usd" numeric;--> statement-breakpoint
ALTER TABLE "charge_receipts" ADD COLUMN "litellm_discount_usd" numeric;