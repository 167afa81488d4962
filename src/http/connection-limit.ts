import type { Server } from "node:http";
import type { Socket } from "node:net";

// A socket that has sent nothing for this long is taken for idle, not slow.
const SILENT_MS = 1_000;

/**
 * At most `max` open connections, kept below the process's file-descriptor limit. At the cap a
 * newcomer takes the place of the oldest socket that has sent nothing for a second, so a flood
 * of silent sockets cannot shut real callers out while it waits for its timeouts; when no socket
 * is silent the newcomer is closed.
 */
export function limitConnections(server: Server, max: number): void {
  // Insertion order is age order.
  const openedAt = new Map<Socket, number>();
  server.on("connection", (socket: Socket) => {
    if (openedAt.size >= max) {
      const silent = oldestSilentSocket(openedAt, Date.now() - SILENT_MS);
      if (silent === undefined) {
        socket.destroy();
        return;
      }
      silent.destroy();
      openedAt.delete(silent);
    }
    openedAt.set(socket, Date.now());
    socket.once("close", () => openedAt.delete(socket));
  });
}

function oldestSilentSocket(openedAt: ReadonlyMap<Socket, number>, openedBefore: number): Socket | undefined {
  for (const [socket, opened] of openedAt) {
    if (opened > openedBefore) return undefined;
    if (socket.bytesRead === 0) return socket;
  }
  return undefined;
}
