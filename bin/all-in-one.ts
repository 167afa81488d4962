import "../src/platform/node-version.js";
import { ROLES } from "../src/platform/config.js";
import { migrateAtStart, runService, settingsOrExit } from "../src/platform/process.js";
import { reloadOnSighup, startUsageWorker } from "../src/worker/start.js";
import { startHttpServer } from "../src/receiver/start.js";

await runService(settingsOrExit(ROLES["all-in-one"]), async (deps) => {
  await migrateAtStart(deps.settings.databaseUrl);
  // The worker starts first so a bad price book stops the process before it accepts traffic.
  const worker = startUsageWorker(deps);
  reloadOnSighup(worker);
  // Health and metrics are served on PORT with the receiver's routes; METRICS_PORT is a worker's alone.
  const receiver = await startHttpServer(deps, "receiver", { setting: "PORT", port: deps.settings.port });
  return [receiver, worker];
});
