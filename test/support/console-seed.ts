import type pg from "pg";
import { type ChainedRow, chainedContent, chainedEntriesQuery, GENESIS_HASH, ledgerEntryHash } from "../../src/books/entry-hash.js";
import { rewriteBooks } from "./books-rewrite.js";
import { rollUpAll } from "./roll-up-all.js";

export type ConsoleSeed = {
  receipts: number;
  /** Charged in turn, receipt i to account i mod accounts.length; every account ends negative (charges only). */
  accounts: string[];
  models: string[];
  /** Call times spread evenly over this many days before now. */
  days: number;
};

/**
 * Books of `receipts` charges written straight in SQL, as the console's tests and bench need them
 * (100,000 through the worker would take minutes): receipts, their ledger entries chained with the
 * service's own hash, the accounts' balances, and usage_hourly as the worker's rollup keeps it. They tie
 * out (reconcileLedger finds no drift).
 */
export async function seedChargedBooks(pool: pg.Pool, seed: ConsoleSeed): Promise<void> {
  const spanSeconds = seed.days * 86_400;
  await rewriteBooks(pool, [
    ["INSERT INTO price_books (hash) VALUES ('seed-book') ON CONFLICT (hash) DO NOTHING", []],
    [
      `INSERT INTO charge_receipts (idempotency_key, billing_account_id, model, pricing_source, rate_step, price_entry,
         reported_cost_usd, provider_cost_usd, charged_credits, prompt_tokens, completion_tokens, cache_read_tokens,
         cache_write_tokens, reasoning_tokens, usage_fingerprint, price_book_id, event_time, created_at, key_hash, team_id)
       SELECT 'seed-call-' || i, ($2::text[])[1 + i % cardinality($2::text[])], ($3::text[])[1 + (i / 7) % cardinality($3::text[])],
              'price_book', 'cost_map', ($3::text[])[1 + (i / 7) % cardinality($3::text[])],
              '0.0001', '0.0001', 1000 + (i % 97) * 10, 400 + i % 50, 100 + i % 30, 0, 0, 0, '\\x5eed', (SELECT id FROM price_books WHERE hash = 'seed-book'),
              t, t + interval '1 second', repeat(to_hex(i % 5), 64), 'team-' || (i % 3)
         FROM generate_series(1, $1::int) AS i,
              LATERAL (SELECT now() - make_interval(secs => $4::float8 * ($1::int - i) / $1::int) AS t) times`,
      [seed.receipts, seed.accounts, seed.models, spanSeconds],
    ],
    [
      `INSERT INTO ledger_entries (billing_account_id, kind, amount_credits, balance_before, balance_after, reference, receipt_id, seq, hash, created_at)
       SELECT billing_account_id, 'charge', -charged_credits,
              -coalesce(sum(charged_credits) OVER earlier, 0), -sum(charged_credits) OVER upto, idempotency_key, id,
              row_number() OVER upto, '\\x', created_at
         FROM charge_receipts WHERE usage_fingerprint = '\\x5eed'
       WINDOW upto AS (PARTITION BY billing_account_id ORDER BY id),
              earlier AS (PARTITION BY billing_account_id ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)`,
      [],
    ],
    [
      `INSERT INTO accounts (id, balance_credits, ledger_seq, created_at, updated_at)
       SELECT billing_account_id, -sum(charged_credits), count(*), min(created_at), max(created_at)
         FROM charge_receipts WHERE usage_fingerprint = '\\x5eed' GROUP BY billing_account_id`,
      [],
    ],
    async (client) => {
      const { rows } = await client.query<ChainedRow>(
        chainedEntriesQuery("l.billing_account_id = ANY($1::text[])", "ORDER BY l.billing_account_id, l.seq"),
        [seed.accounts],
      );
      const ids: string[] = [];
      const hashes: string[] = [];
      let previous = GENESIS_HASH;
      let account = "";
      for (const row of rows) {
        if (row.billing_account_id !== account) [account, previous] = [row.billing_account_id, GENESIS_HASH];
        previous = ledgerEntryHash(previous, chainedContent(row));
        ids.push(row.id);
        hashes.push(previous);
      }
      await client.query(`UPDATE ledger_entries l SET hash = decode(h.hash, 'hex') FROM unnest($1::bigint[], $2::text[]) AS h(id, hash) WHERE l.id = h.id`, [ids, hashes]);
    },
  ]);
  await rollUpAll(pool);
  await pool.query("ANALYZE");
}
