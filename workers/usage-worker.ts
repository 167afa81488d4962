import { createDeps } from "../src/deps.js";
import { reloadOnSighup, settingsOrExit, startUsageWorker, stopOnSignal } from "./runtime.js";

const deps = createDeps(settingsOrExit());
const worker = startUsageWorker(deps);
reloadOnSighup(worker);
stopOnSignal(deps, [worker]);
