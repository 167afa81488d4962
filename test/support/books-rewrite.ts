import type pg from "pg";
import { type ChainedRow, chainedContent, chainedEntriesQuery, GENESIS_HASH, ledgerEntryHash } from "../../src/books/entry-hash.js";

export type Statement = [text: string, values: unknown[]];
/** A statement, or work that reads before it writes, inside the rewriting transaction. */
export type Rewrite = Statement | ((client: pg.PoolClient) => Promise<void>);

/**
 * Runs rewrites against the books with triggers off (the append-only guard on ledger entries
 * too), as a superuser can: how the tamper tests attack the books, and how a test moves entries
 * to other dates (then `rechain`s them, as such an attacker would).
 */
export async function rewriteBooks(pool: pg.Pool, rewrites: Rewrite[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SET LOCAL session_replication_role = replica");
    for (const rewrite of rewrites) {
      if (typeof rewrite === "function") await rewrite(client);
      else await client.query(rewrite[0], rewrite[1]);
    }
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK");
    throw error;
  } finally {
    client.release();
  }
}

/** Recomputes every hash of an account's chain with the service's own hash, and its sequence number. */
export function rechain(account: string): Rewrite {
  return async (client) => {
    const { rows } = await client.query<ChainedRow>(chainedEntriesQuery("l.billing_account_id = $1", "ORDER BY l.seq"), [account]);
    let previous = GENESIS_HASH;
    for (const row of rows) {
      previous = ledgerEntryHash(previous, chainedContent(row));
      await client.query("UPDATE ledger_entries SET hash = decode($2, 'hex') WHERE id = $1", [row.id, previous]);
    }
    await client.query("UPDATE accounts SET ledger_seq = $2 WHERE id = $1", [account, rows.at(-1)?.seq ?? 0]);
  };
}
