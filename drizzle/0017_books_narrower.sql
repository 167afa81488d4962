-- Edited by hand (drizzle-kit writes neither the conversions nor the rename): narrower receipts and
-- entries, converted in place so that every hash written before still verifies. Receipts keep
-- every field; their content (RECEIPT_CONTENT in src/books/entry-hash.ts) renders the digests as
-- the same hex text and the price book's hash from price_books, so each entry's hash is unchanged.
-- A fingerprint or entry hash that is not hex (none the service wrote) stops the migration here.
CREATE TABLE "price_books" (
	"id" serial PRIMARY KEY NOT NULL,
	"hash" text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "price_books_hash_key" ON "price_books" USING btree ("hash");--> statement-breakpoint
INSERT INTO "price_books" ("hash") SELECT DISTINCT "price_book_hash" FROM "charge_receipts" ORDER BY 1;--> statement-breakpoint
-- ALTER ... USING takes no subquery; a function may read the table. Dropped below.
CREATE FUNCTION "price_book_id_of"(book text) RETURNS integer LANGUAGE sql STABLE AS $$
  SELECT id FROM price_books WHERE hash = book
$$;--> statement-breakpoint
-- An account's receipts are reached through its charge entries (src/books/usage-rollup.ts,
-- reconcile-ledger.ts); dropped before the rewrite below, which would otherwise rebuild it.
DROP INDEX "charge_receipts_account_idx";--> statement-breakpoint
-- One rewrite of the table for both columns.
ALTER TABLE "charge_receipts"
  ALTER COLUMN "usage_fingerprint" SET DATA TYPE bytea USING decode("usage_fingerprint", 'hex'),
  ALTER COLUMN "price_book_hash" SET DATA TYPE integer USING "price_book_id_of"("price_book_hash");--> statement-breakpoint
ALTER TABLE "charge_receipts" RENAME COLUMN "price_book_hash" TO "price_book_id";--> statement-breakpoint
DROP FUNCTION "price_book_id_of";--> statement-breakpoint
-- Dropped before the rewrite below, which would otherwise rebuild them first.
DROP INDEX "ledger_entries_account_created_idx";--> statement-breakpoint
DROP INDEX "ledger_entries_receipt_key";--> statement-breakpoint
DROP INDEX "ledger_entries_grant_key";--> statement-breakpoint
-- A table rewrite: the append-only trigger (row-level UPDATE) does not fire.
ALTER TABLE "ledger_entries" ALTER COLUMN "hash" SET DATA TYPE bytea USING decode("hash", 'hex');--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_receipt_key" ON "ledger_entries" USING btree ("receipt_id") WHERE "ledger_entries"."receipt_id" is not null;--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_grant_key" ON "ledger_entries" USING btree ("grant_id") WHERE "ledger_entries"."grant_id" is not null;
