import { parseMigrationEnv } from "../src/config/env.js";
import { runMigrations } from "../src/db/migrate.js";
import { settingsOrExit } from "./runtime.js";

const { databaseUrl } = settingsOrExit(parseMigrationEnv);
await runMigrations(databaseUrl);
process.stdout.write("migrations applied\n");
