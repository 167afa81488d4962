import { createDeps } from "../src/deps.js";
import { reloadOnSighup, settingsOrExit, startHttpServer, startUsageWorker, stopOnSignal } from "./runtime.js";

const deps = createDeps(settingsOrExit());
const worker = startUsageWorker(deps);
reloadOnSighup(worker);
// A worker serves only /healthz, /readyz and its own /metrics.
const server = await startHttpServer(deps, { receiver: false });
stopOnSignal(deps, [server, worker]);
