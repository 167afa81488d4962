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
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
