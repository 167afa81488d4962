import { runService, startHttpServer } from "./runtime.js";

await runService(async (deps) => [await startHttpServer(deps, { receiver: true }, { setting: "PORT", port: deps.settings.port })]);
