import "../src/platform/node-version.js";
import { ROLES } from "../src/platform/config.js";
import { exitOnStartFailure, migrateAtStart, settingsOrExit } from "../src/platform/process.js";

const { databaseUrl } = settingsOrExit(ROLES.migrate);
await migrateAtStart(databaseUrl).catch(exitOnStartFailure);
process.stdout.write("migrations applied\n");
