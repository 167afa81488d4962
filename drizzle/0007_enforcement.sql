CREATE TABLE "account_principals" (
	"billing_account_id" text NOT NULL,
	"kind" text NOT NULL,
	"principal" text NOT NULL,
	"first_used_at" timestamp with time zone NOT NULL,
	"last_used_at" timestamp with time zone NOT NULL,
	CONSTRAINT "account_principals_billing_account_id_kind_principal_pk" PRIMARY KEY("billing_account_id","kind","principal")
);
--> statement-breakpoint
CREATE TABLE "enforcement_accounts" (
	"billing_account_id" text PRIMARY KEY NOT NULL,
	"state" text NOT NULL,
	"changed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enforcement_actions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"principal" text NOT NULL,
	"action" text NOT NULL,
	"billing_account_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"sends" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_error" text,
	"uncertain" boolean DEFAULT false NOT NULL,
	"resend" boolean DEFAULT false NOT NULL,
	"done_at" timestamp with time zone,
	"outcome" text
);
--> statement-breakpoint
CREATE TABLE "enforcement_principals" (
	"kind" text NOT NULL,
	"principal" text NOT NULL,
	"state" text NOT NULL,
	"changed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "enforcement_principals_kind_principal_pk" PRIMARY KEY("kind","principal")
);
--> statement-breakpoint
CREATE INDEX "account_principals_principal_idx" ON "account_principals" USING btree ("kind","principal");--> statement-breakpoint
CREATE INDEX "enforcement_actions_pending_idx" ON "enforcement_actions" USING btree ("id") WHERE "enforcement_actions"."done_at" is null;--> statement-breakpoint
CREATE INDEX "enforcement_actions_account_idx" ON "enforcement_actions" USING btree ("billing_account_id","id");