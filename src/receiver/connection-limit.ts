import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { ConnectionCapAction } from "../platform/metrics.js";

// A connection younger than this is taken for slow, not idle.
const GRACE_MS = 1_000;

type Connection = { openedAt: number; requestsInHand: number; requestsServed: number };

/**
 * File descriptors kept free of HTTP connections. An all-in-one process under load holds about 45
 * besides them (measured: 28 of Node's own, stdio and libuv's spare for EMFILE included, 10 of
 * PostgreSQL's pool, Redis, the listener); LiteLLM's database (2), more Redis connections on a
 * cluster, LiteLLM's admin API, the price book and cost map being read, DNS, and the newcomer
 * accepted before the connection it replaces is closed need the rest. A connection that finds no
 * descriptor is reset by the kernel before the eviction below can see it.
 */
export const DESCRIPTOR_RESERVE = 128;

/**
 * The connections a server holds at most: MAX_CONNECTIONS, or fewer when the process's
 * file-descriptor limit leaves less room; below 1 when it leaves none. An unknown limit
 * (unreadable, unlimited) leaves MAX_CONNECTIONS as it is.
 */
export function connectionCap(maxConnections: number, openFileLimit: number | undefined): number {
  return openFileLimit === undefined ? maxConnections : Math.min(maxConnections, openFileLimit - DESCRIPTOR_RESERVE);
}

/**
 * At most `max` open connections (connectionCap: below the process's file-descriptor limit). At the cap a
 * newcomer takes the place of the oldest connection that is not in the middle of a request:
 * first one that never completed its headers (silent, or trickling them), then an idle
 * keep-alive one. So sockets that send nothing, or a byte now and then, cannot shut callers out
 * while they wait for their timeouts. When every connection is busy the newcomer is closed.
 */
export function limitConnections(server: Server, max: number, onClosedAtCap: (action: ConnectionCapAction) => void = () => {}): void {
  // Insertion order is age order.
  const connections = new Map<Socket, Connection>();
  server.on("connection", (socket: Socket) => {
    if (connections.size >= max) {
      const evicted = oldestIdle(connections, Date.now() - GRACE_MS);
      if (evicted === undefined) {
        socket.destroy();
        onClosedAtCap("refused");
        return;
      }
      evicted.destroy();
      onClosedAtCap("evicted");
      connections.delete(evicted);
    }
    connections.set(socket, { openedAt: Date.now(), requestsInHand: 0, requestsServed: 0 });
    socket.once("close", () => connections.delete(socket));
  });
  server.on("request", (request: IncomingMessage, response: ServerResponse) => {
    const connection = connections.get(request.socket);
    if (connection === undefined) return;
    connection.requestsInHand += 1;
    response.once("close", () => {
      connection.requestsInHand -= 1;
      connection.requestsServed += 1;
    });
  });
}

function oldestIdle(connections: ReadonlyMap<Socket, Connection>, openedBefore: number): Socket | undefined {
  let idleKeepAlive: Socket | undefined;
  for (const [socket, connection] of connections) {
    if (connection.openedAt > openedBefore) break;
    if (connection.requestsInHand > 0) continue;
    if (connection.requestsServed === 0) return socket;
    idleKeepAlive ??= socket;
  }
  return idleKeepAlive;
}
