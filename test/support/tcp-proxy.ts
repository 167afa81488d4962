import { createServer, type Server, type Socket, connect } from "node:net";

/**
 * A TCP proxy a test can cut and restore, to make a real PostgreSQL or Redis disappear for one
 * process and come back on the same address, without touching the server itself.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** Bytes the target sent through the proxy: what its clients were made to read. */
  bytesFromTarget = 0;
  private constructor(private readonly target: { host: string; port: number }, public port: number) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target, 0);
    await proxy.open();
    return proxy;
  }

  async open(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on("close", () => this.sockets.delete(socket));
        socket.on("error", () => socket.destroy());
      }
      upstream.on("data", (chunk: Buffer) => (this.bytesFromTarget += chunk.length));
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, "127.0.0.1", resolve));
    const address = this.server.address();
    if (typeof address === "object" && address) this.port = address.port;
  }

  /** Refuses new connections and drops open ones, as a server that went away would. */
  async cut(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}
