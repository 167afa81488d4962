import { createDeps } from "../src/deps.js";
import { settingsOrExit, startUsageWorker, stopOnSignal } from "./runtime.js";

const deps = createDeps(settingsOrExit());
stopOnSignal(deps, [startUsageWorker(deps)]);
