import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import pg from "pg";
import * as schema from "./schema.js";

export type Db = NodePgDatabase<typeof schema>;

export type Database = {
  pool: pg.Pool;
  db: Db;
};

export function createDatabase(
  databaseUrl: string,
  options: { max?: number; onIdleClientError?: (error: Error) => void } = {},
): Database {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max ?? 10,
    application_name: "spend-ingest",
  });
  // An idle client losing its server must not crash the process; the pool replaces it.
  pool.on("error", options.onIdleClientError ?? (() => {}));
  return { pool, db: drizzle(pool, { schema }) };
}

/** Runs `work` in one transaction on one client, rolling back on any throw. */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let result: T;
  try {
    await client.query("BEGIN");
    result = await work(client);
    await client.query("COMMIT");
  } catch (error) {
    // A client whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
    const rollbackError = await client.query("ROLLBACK").then(
      () => undefined,
      (failure: Error) => failure,
    );
    client.release(rollbackError);
    throw error;
  }
  client.release();
  return result;
}

/**
 * What PostgreSQL text and jsonb can hold of a string from outside: neither the NUL character
 * nor a lone UTF-16 surrogate, so those are kept visibly instead of failing a whole batch on
 * one hostile string.
 */
export function storableCopy(text: string): string {
  return text.replaceAll("\u0000", "\\u0000").toWellFormed();
}

/** JSON for a jsonb parameter, every string in it made storable. */
export function jsonbText(value: unknown): string {
  return JSON.stringify(value ?? null, (_key, inner: unknown) => (typeof inner === "string" ? storableCopy(inner) : inner));
}
