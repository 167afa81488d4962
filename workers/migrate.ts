import { parseMigrationEnv } from "../src/config/env.js";
import { exitOnStartFailure, migrateAtStart, settingsOrExit } from "./runtime.js";

const { databaseUrl } = settingsOrExit(parseMigrationEnv);
await migrateAtStart(databaseUrl).catch(exitOnStartFailure);
process.stdout.write("migrations applied\n");
