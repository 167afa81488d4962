import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import { projectPath } from "../project-path.js";
import { DATABASE_TIMEOUTS } from "./client.js";

/** drizzle/ at the project's root, whether this module runs from src/ or from the build in dist/. */
export const MIGRATIONS_FOLDER = projectPath("drizzle");

// Any constant shared by every process of this service; two starting at once queue on it.
const MIGRATION_LOCK_KEY = 7_242_015_001;

/** Applies pending migrations (those of `folder`: the project's own unless a test says); safe when several processes start at the same time. */
export async function runMigrations(databaseUrl: string, folder = MIGRATIONS_FOLDER): Promise<void> {
  // A PostgreSQL that never answers stops the start rather than hang it. The lock below is not
  // bounded: another process applying the migrations holds it as long as that takes.
  const client = new pg.Client({
    connectionString: databaseUrl,
    application_name: "spend-ingest-migrate",
    connectionTimeoutMillis: DATABASE_TIMEOUTS.connectMs,
  });
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    await migrate(drizzle(client), { migrationsFolder: folder });
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => {});
    await client.end();
  }
}
