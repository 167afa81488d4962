import "../src/platform/node-version.js";
import { reloadOnSighup, startUsageWorker } from "../src/worker/start.js";
import { ROLES } from "../src/platform/config.js";
import { runService, settingsOrExit } from "../src/platform/process.js";
import { startHttpServer } from "../src/receiver/start.js";

await runService(settingsOrExit(ROLES.worker), async (deps) => {
  const { metricsPort } = deps.settings;
  // Only /healthz, /readyz and this process's /metrics, and only when asked: workers started
  // from the receiver's environment on one host must not contend for a port. Bound before the
  // worker takes a job, so a port in use stops a process that holds none.
  const server =
    metricsPort === undefined ? undefined : await startHttpServer(deps, "health-and-metrics", { setting: "METRICS_PORT", port: metricsPort });
  const worker = startUsageWorker(deps, { metricsPort: server?.port });
  reloadOnSighup(worker);
  return server === undefined ? [worker] : [server, worker];
});
