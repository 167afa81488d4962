import pg from "pg";
import { runMigrations } from "../../src/db/migrate.js";
import { ADMIN_DATABASE_URL, databaseUrlFor, TEMPLATE_DATABASE } from "./test-env.js";

/** Builds the migrated template database that every test file copies. */
export default async function setup(): Promise<() => Promise<void>> {
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE_DATABASE}`);
  await admin.end();
  await runMigrations(databaseUrlFor(TEMPLATE_DATABASE));
  return async () => {
    const cleanup = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
    await cleanup.connect();
    await cleanup.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
    await cleanup.end();
  };
}
