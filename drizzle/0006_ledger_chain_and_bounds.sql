ALTER TABLE "accounts" ADD COLUMN "ledger_seq" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD COLUMN "seq" bigint;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD COLUMN "hash" text;--> statement-breakpoint
-- Chains the entries written before this version as src/ledger/entry-hash.ts chains new ones:
-- fields joined by '|', each text prefixed by its length in UTF-8 bytes. Dropped below: reconcile
-- recomputes hashes in the service, never with code stored in the database it checks.
CREATE FUNCTION ledger_entry_hash(
  previous text, account text, seq bigint, kind text, amount bigint, balance_before bigint, balance_after bigint,
  reference text, receipt_id bigint, grant_id bigint, posted_at timestamptz, source_content text
) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT encode(sha256(convert_to(concat_ws('|',
    previous, octet_length(convert_to(account, 'UTF8')) || ':' || account, seq, kind, amount, balance_before, balance_after,
    octet_length(convert_to(reference, 'UTF8')) || ':' || reference, coalesce(receipt_id::text, ''), coalesce(grant_id::text, ''),
    (extract(epoch FROM posted_at) * 1000000)::bigint,
    coalesce(encode(sha256(convert_to(source_content, 'UTF8')), 'hex'), '')), 'UTF8')), 'hex')
$$;--> statement-breakpoint
-- Entries written before the chain existed are numbered in id order and chained as they stand,
-- each with its receipt's or grant's content as RECEIPT_CONTENT / GRANT_CONTENT (entry-hash.ts) read it.
UPDATE "ledger_entries" l SET "seq" = n.seq
FROM (SELECT id, row_number() OVER (PARTITION BY billing_account_id ORDER BY id) AS seq FROM "ledger_entries") n
WHERE l.id = n.id;--> statement-breakpoint
DO $$
DECLARE
  entry record;
  previous text := '';
  account text := NULL;
BEGIN
  FOR entry IN
    SELECT l.*, CASE WHEN l.kind = 'charge' THEN
      (SELECT json_build_array(r.idempotency_key, r.billing_account_id, r.claimed_billing_account_id, r.model,
         r.model_group, r.pricing_source, r.rate_step, r.price_entry, r.pricing_reason, r.reported_cost_usd::text,
         r.provider_cost_usd::text, r.charged_credits::text, r.prompt_tokens, r.completion_tokens, r.cache_read_tokens,
         r.cache_write_tokens, r.reasoning_tokens, r.usage_fingerprint, r.price_book_hash,
         (extract(epoch FROM r.event_time) * 1000000)::int8::text, (extract(epoch FROM r.created_at) * 1000000)::int8::text)::text
       FROM charge_receipts r WHERE r.id = l.receipt_id)
    ELSE
      (SELECT json_build_array(g.billing_account_id, g.reference, g.credits::text, g.reason,
         (extract(epoch FROM g.created_at) * 1000000)::int8::text)::text
       FROM grants g WHERE g.id = l.grant_id)
    END AS source_content
    FROM "ledger_entries" l ORDER BY l.billing_account_id, l.seq
  LOOP
    IF account IS DISTINCT FROM entry.billing_account_id THEN
      previous := '';
      account := entry.billing_account_id;
    END IF;
    previous := ledger_entry_hash(previous, entry.billing_account_id, entry.seq, entry.kind, entry.amount_credits,
      entry.balance_before, entry.balance_after, entry.reference, entry.receipt_id, entry.grant_id, entry.created_at,
      entry.source_content);
    UPDATE "ledger_entries" SET "hash" = previous WHERE id = entry.id;
  END LOOP;
END $$;--> statement-breakpoint
DROP FUNCTION ledger_entry_hash;--> statement-breakpoint
UPDATE "accounts" a SET "ledger_seq" = h.seq
FROM (SELECT billing_account_id, max(seq) AS seq FROM "ledger_entries" GROUP BY billing_account_id) h
WHERE a.id = h.billing_account_id;--> statement-breakpoint
ALTER TABLE "ledger_entries" ALTER COLUMN "seq" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "ledger_entries" ALTER COLUMN "hash" SET NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_account_seq_key" ON "ledger_entries" USING btree ("billing_account_id","seq");--> statement-breakpoint
DROP INDEX "ledger_entries_account_idx";--> statement-breakpoint
-- NOT VALID: new grants and charges stay within the bound; rows from before it are reported by
-- reconcile rather than stop the migration.
ALTER TABLE "charge_receipts" ADD CONSTRAINT "charge_receipts_credits_bounded" CHECK ("charge_receipts"."charged_credits" between -9007199254740991 and 9007199254740991) NOT VALID;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_credits_bounded" CHECK ("grants"."credits" between -9007199254740991 and 9007199254740991) NOT VALID;--> statement-breakpoint
-- Ledger entries are append-only for the service; changing one takes the table owner disabling
-- this trigger, and the chain shows the change then (ops reconcile, which also checks the trigger).
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger entries are append-only: % of entry % refused', TG_OP, OLD.id USING ERRCODE = 'insufficient_privilege';
END $$;--> statement-breakpoint
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON "ledger_entries"
  FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();--> statement-breakpoint
-- Stable periods: an entry must commit within 30 s of its posting time, and is never dated ahead
-- of the clock, so once a month has been over for a minute no entry dated inside it can still
-- appear. A transaction slower than that rolls back and its job retries with a new posting time.
CREATE FUNCTION ledger_entries_commit_promptly() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.created_at < clock_timestamp() - interval '30 seconds' THEN
    RAISE EXCEPTION 'ledger entry for % posted at % would commit more than 30 s later', NEW.billing_account_id, NEW.created_at
      USING ERRCODE = 'serialization_failure';
  END IF;
  IF NEW.created_at > clock_timestamp() + interval '1 second' THEN
    RAISE EXCEPTION 'ledger entry for % posted at % is dated ahead of the clock', NEW.billing_account_id, NEW.created_at
      USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN NULL;
END $$;--> statement-breakpoint
CREATE CONSTRAINT TRIGGER ledger_entries_commit_promptly AFTER INSERT ON "ledger_entries"
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entries_commit_promptly();
