import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

// A connection younger than this is taken for slow, not idle.
const GRACE_MS = 1_000;

type Connection = { openedAt: number; requestsInHand: number; requestsServed: number };

/**
 * At most `max` open connections, kept below the process's file-descriptor limit. At the cap a
 * newcomer takes the place of the oldest connection that is not in the middle of a request:
 * first one that never completed its headers (silent, or trickling them), then an idle
 * keep-alive one. So sockets that send nothing, or a byte now and then, cannot shut callers out
 * while they wait for their timeouts. When every connection is busy the newcomer is closed.
 */
export function limitConnections(server: Server, max: number): void {
  // Insertion order is age order.
  const connections = new Map<Socket, Connection>();
  server.on("connection", (socket: Socket) => {
    if (connections.size >= max) {
      const evicted = oldestIdle(connections, Date.now() - GRACE_MS);
      if (evicted === undefined) {
        socket.destroy();
        return;
      }
      evicted.destroy();
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
