import { runMigrations } from "../src/db/migrate.js";
import { createDeps } from "../src/deps.js";
import { reloadOnSighup, settingsOrExit, startHttpServer, startUsageWorker, stopOnSignal } from "./runtime.js";

const settings = settingsOrExit();
await runMigrations(settings.databaseUrl);
const deps = createDeps(settings);
// The worker starts first so a bad price book stops the process before it accepts traffic.
const worker = startUsageWorker(deps);
reloadOnSighup(worker);
const receiver = await startHttpServer(deps, { receiver: true });
stopOnSignal(deps, [receiver, worker]);
