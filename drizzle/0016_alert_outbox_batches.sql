-- One row per transaction's alerts. Each existing row becomes a row holding its one alert, keeping
-- its id, times and delivery state: an undelivered one is delivered by the sweeper as before. The
-- old columns are emptied in the same update, so the new row versions do not carry them.
ALTER TABLE "alert_outbox" ADD COLUMN "alerts" jsonb;--> statement-breakpoint
ALTER TABLE "alert_outbox" ALTER COLUMN "event" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "alert_outbox" ALTER COLUMN "fields" DROP NOT NULL;--> statement-breakpoint
UPDATE "alert_outbox" SET "alerts" = jsonb_build_array(jsonb_build_object('event', "event", 'fields', "fields")), "event" = NULL, "fields" = NULL;--> statement-breakpoint
ALTER TABLE "alert_outbox" ALTER COLUMN "alerts" SET NOT NULL;--> statement-breakpoint
CREATE INDEX "alert_outbox_delivered_idx" ON "alert_outbox" USING btree ("delivered_at") WHERE "alert_outbox"."delivered_at" is not null;--> statement-breakpoint
ALTER TABLE "alert_outbox" DROP COLUMN "event";--> statement-breakpoint
ALTER TABLE "alert_outbox" DROP COLUMN "fields";
