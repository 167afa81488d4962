import type pg from "pg";

export type Statement = [text: string, values: unknown[]];

/**
 * Runs statements against the books with triggers off (the append-only guard on ledger
 * entries too), as a superuser can: how the tamper tests attack the books, and how a test
 * moves entries to other dates (then `rechain`s them, as such an attacker would).
 */
export async function rewriteBooks(pool: pg.Pool, statements: Statement[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SET LOCAL session_replication_role = replica");
    for (const [text, values] of statements) await client.query(text, values);
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK");
    throw error;
  } finally {
    client.release();
  }
}

/** Recomputes every hash of an account's chain with the service's own SQL function, and its sequence number. */
export function rechain(account: string): Statement {
  return [
    `DO $$
     DECLARE entry record; previous text := '';
     BEGIN
       FOR entry IN SELECT * FROM ledger_entries WHERE billing_account_id = ${literal(account)} ORDER BY seq LOOP
         previous := ledger_entry_hash(previous, entry.billing_account_id, entry.seq, entry.kind, entry.amount_credits,
           entry.balance_before, entry.balance_after, entry.reference, entry.receipt_id, entry.grant_id, entry.created_at);
         UPDATE ledger_entries SET hash = previous WHERE id = entry.id;
       END LOOP;
       UPDATE accounts SET ledger_seq = (SELECT coalesce(max(seq), 0) FROM ledger_entries WHERE billing_account_id = ${literal(account)})
       WHERE id = ${literal(account)};
     END $$`,
    [],
  ];
}

// A DO block takes no parameters; test account ids are plain, but quote them properly anyway.
function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
