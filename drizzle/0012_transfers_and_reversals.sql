CREATE TABLE "reversals" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"receipt_id" bigint NOT NULL,
	"billing_account_id" text NOT NULL,
	"reference" text NOT NULL,
	"credits" bigint NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "reversals_credits_positive" CHECK ("reversals"."credits" > 0),
	CONSTRAINT "reversals_credits_bounded" CHECK ("reversals"."credits" between -9007199254740991 and 9007199254740991)
);
--> statement-breakpoint
CREATE TABLE "transfers" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"from_account_id" text NOT NULL,
	"to_account_id" text NOT NULL,
	"reference" text NOT NULL,
	"credits" bigint NOT NULL,
	"expiration" text NOT NULL,
	"expires_at" timestamp with time zone,
	"allow_overdraft" boolean NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "transfers_credits_positive" CHECK ("transfers"."credits" > 0),
	CONSTRAINT "transfers_credits_bounded" CHECK ("transfers"."credits" between -9007199254740991 and 9007199254740991),
	CONSTRAINT "transfers_between_accounts" CHECK ("transfers"."from_account_id" <> "transfers"."to_account_id"),
	CONSTRAINT "transfers_fixed_has_expiry" CHECK (("transfers"."expiration" = 'fixed') = ("transfers"."expires_at" is not null))
);
--> statement-breakpoint
CREATE UNIQUE INDEX "reversals_reference_key" ON "reversals" USING btree ("reference");--> statement-breakpoint
CREATE INDEX "reversals_receipt_idx" ON "reversals" USING btree ("receipt_id");--> statement-breakpoint
CREATE UNIQUE INDEX "transfers_reference_key" ON "transfers" USING btree ("reference");