import { createServer } from "node:net";

/** A TCP port free on 127.0.0.1 right now, for a server a test or the bench starts. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** A free port whose partner `offset` above is free too: a Redis Cluster node's bus listens at port + 10000. */
export async function freePortWithPartner(offset: number): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + offset <= 65535 && (await isFree(port + offset))) return port;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
