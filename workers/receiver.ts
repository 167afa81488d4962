import { createDeps } from "../src/deps.js";
import { settingsOrExit, startHttpServer, stopOnSignal } from "./runtime.js";

const deps = createDeps(settingsOrExit());
stopOnSignal(deps, [await startHttpServer(deps, { receiver: true })]);
