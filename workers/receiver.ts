import { createDeps } from "../src/deps.js";
import { settingsOrExit, startReceiver, stopOnSignal } from "./runtime.js";

const deps = createDeps(settingsOrExit());
stopOnSignal(deps, [await startReceiver(deps)]);
