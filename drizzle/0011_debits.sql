CREATE TABLE "debits" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"billing_account_id" text NOT NULL,
	"reference" text NOT NULL,
	"credits" bigint NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "debits_credits_positive" CHECK ("debits"."credits" > 0),
	CONSTRAINT "debits_credits_bounded" CHECK ("debits"."credits" between -9007199254740991 and 9007199254740991)
);
--> statement-breakpoint
CREATE UNIQUE INDEX "debits_reference_key" ON "debits" USING btree ("reference");