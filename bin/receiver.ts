import "../src/platform/node-version.js";
import { ROLES } from "../src/platform/config.js";
import { runService, settingsOrExit } from "../src/platform/process.js";
import { startHttpServer } from "../src/receiver/start.js";

await runService(settingsOrExit(ROLES.receiver), async (deps) => [
  await startHttpServer(deps, "receiver", { setting: "PORT", port: deps.settings.port }),
]);
