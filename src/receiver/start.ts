import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { readOpenFileLimit } from "../platform/open-file-limit.js";
import type { Stoppable } from "../platform/process.js";
import { StartFailure } from "../platform/start-failure.js";
import { connectionCap, DESCRIPTOR_RESERVE } from "./connection-limit.js";
import { buildServer, type ServerDeps, type ServerRole } from "./server.js";

type ListenOn = { setting: "PORT" | "METRICS_PORT"; port: number };

/**
 * The HTTP server: as the `receiver`, callbacks, the account API and the queue UI; in every
 * process, health and the process's own metrics. `port` is the one it bound (PORT or METRICS_PORT 0: a free one).
 * Its start line names the address, and the connections it holds at most with the
 * file-descriptor limit that decided them.
 */
export async function startHttpServer<R extends ServerRole>(
  deps: ServerDeps<R>,
  role: R,
  listenOn: ListenOn,
): Promise<Stoppable & { app: FastifyInstance; port: number }> {
  const { host, maxConnections: configured } = deps.settings;
  const nofileLimit = readOpenFileLimit();
  const maxConnections = connectionCap(configured, nofileLimit);
  if (maxConnections < 1) {
    throw new StartFailure(
      `the file-descriptor limit (ulimit -n) of ${nofileLimit} leaves no room for connections; raise it above ${DESCRIPTOR_RESERVE} (the descriptors the process keeps for itself)`,
      2,
    );
  }
  const app = await buildServer(deps, role, maxConnections);
  try {
    await app.listen({ port: listenOn.port, host });
  } catch (error) {
    throw listenFailure(error, listenOn, host);
  }
  const { port } = app.server.address() as AddressInfo;
  const name = role === "receiver" ? "receiver" : "health and metrics server";
  deps.logger.info({ host, port, maxConnections, nofileLimit: nofileLimit ?? null, descriptorReserve: DESCRIPTOR_RESERVE }, `${name} started`);
  if (maxConnections < configured) {
    deps.logger.warn(
      { setting: "MAX_CONNECTIONS", configured, maxConnections, nofileLimit },
      "MAX_CONNECTIONS lowered to fit the file-descriptor limit; raise ulimit -n to hold more",
    );
  }
  return { name, app, port, stop: () => app.close() };
}

/** A listen error the operator must fix becomes a StartFailure that exits 2; any other is as it was. */
function listenFailure(error: unknown, { setting, port }: ListenOn, host: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") return new StartFailure(`${setting} ${port} is in use (EADDRINUSE); choose another ${setting}`, 2);
  if (code === "EACCES") {
    return new StartFailure(`${setting} ${port} may not be bound by this user (EACCES); choose another ${setting} (above 1023)`, 2);
  }
  if (code === "EADDRNOTAVAIL" || code === "EAFNOSUPPORT") {
    return new StartFailure(`invalid setting HOST: ${host} is not an address of this machine (${code})`, 2);
  }
  return error;
}
