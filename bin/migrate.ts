import "../src/platform/node-version.js";
import { ROLES } from "../src/platform/config.js";
import { migrateAtStart, settingsOrExit } from "../src/platform/process.js";
import { exitOnStartFailure } from "../src/platform/start-failure.js";

const { databaseUrl } = settingsOrExit(ROLES.migrate);
await migrateAtStart(databaseUrl).catch(exitOnStartFailure);
process.stdout.write("migrations applied\n");
