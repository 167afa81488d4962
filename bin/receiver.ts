import "../src/platform/node-version.js";
import { runService } from "../src/platform/process.js";
import { startHttpServer } from "../src/receiver/start.js";

await runService(async (deps) => [await startHttpServer(deps, { receiver: true }, { setting: "PORT", port: deps.settings.port })]);
