import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import type { Deps } from "../platform/deps.js";
import { StartFailure, type Stoppable } from "../platform/process.js";
import { buildServer, type ServerRoles } from "./server.js";

type ListenOn = { setting: "PORT" | "METRICS_PORT"; port: number };

/**
 * The HTTP server: with `receiver`, callbacks, the account API and the queue UI; in every
 * process, health and the process's own metrics. `port` is the one it bound (PORT or METRICS_PORT 0: a free one).
 */
export async function startHttpServer(
  deps: Deps,
  roles: ServerRoles,
  listenOn: ListenOn,
): Promise<Stoppable & { app: FastifyInstance; port: number }> {
  const app = await buildServer(deps, roles);
  try {
    await app.listen({ port: listenOn.port, host: "0.0.0.0" });
  } catch (error) {
    const { setting, port } = listenOn;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new StartFailure(`${setting} ${port} is in use (EADDRINUSE); choose another ${setting}`, 2);
    if (code === "EACCES") {
      throw new StartFailure(`${setting} ${port} may not be bound by this user (EACCES); choose another ${setting} (above 1023)`, 2);
    }
    throw error;
  }
  const { port } = app.server.address() as AddressInfo;
  return { name: roles.receiver ? "receiver" : "health and metrics server", app, port, stop: () => app.close() };
}

