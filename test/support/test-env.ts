import pg from "pg";

/**
 * Where the suite finds PostgreSQL and Redis: DATABASE_URL / REDIS_URL as the README's test command says,
 * defaulting to this machine's local services. Each test file gets a database of its own,
 * created from a migrated template, and a queue prefix of its own.
 */
export const ADMIN_DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const TEST_REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0";

export function databaseUrlFor(database: string): string {
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

export const INGEST_TOKEN = "test-ingest-token-0001";
export const SECOND_INGEST_TOKEN = "test-ingest-token-0002";
export const ADMIN_TOKEN = "test-admin-token-0001";

/** Runs one statement (CREATE or DROP DATABASE) on the admin database. */
export async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
