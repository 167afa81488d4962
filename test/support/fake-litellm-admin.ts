import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A FAKE of LiteLLM's admin API, for what cannot run here (a LiteLLM proxy with its database):
 * POST /key/block, /key/unblock ({"key"}), /team/block, /team/unblock ({"team_id"}), answered
 * as LiteLLM answers them — 401 without the master key, 404 for a key or team it does not
 * know, 200 with the object (`blocked` set) otherwise. It records every call it answered with
 * 200, can answer 500 on demand, and can stop listening (connections refused) and listen again
 * on the same port.
 */
export class FakeLitellmAdmin {
  readonly calls: Array<{ route: string; principal: string; at: number }> = [];
  /** Every request that reached it, answered or not, with the headers it carried. */
  readonly requests: Array<{ route: string; authorization: string | undefined; status: number }> = [];
  private failing: number | null = null;
  private readonly unknown = new Set<string>();
  private server: Server | null = null;
  private port = 0;

  constructor(readonly masterKey: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((request, response) => void this.answer(request, response));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Connections are refused until `start` again (same port). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Every call answers `status` until `failWith(null)`. */
  failWith(status: number | null): void {
    this.failing = status;
  }

  /** LiteLLM has no such key or team: 404. */
  forget(principal: string): void {
    this.unknown.add(principal);
  }

  callsTo(route: string, principal?: string): number {
    return this.calls.filter((call) => call.route === route && (principal === undefined || call.principal === principal)).length;
  }

  private async answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const route = (request.url ?? "").replace(/^\//, "");
    const send = (status: number, body: unknown) => {
      this.requests.push({ route, authorization: request.headers.authorization, status });
      response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    };
    if (request.method !== "POST" || !/^(key|team)\/(block|unblock)$/.test(route)) return send(404, { detail: "Not Found" });
    const bearer = request.headers.authorization?.replace(/^Bearer /, "") ?? request.headers["x-litellm-api-key"];
    if (bearer !== this.masterKey) return send(401, { error: { message: "Authentication Error, Invalid proxy server token passed", code: "401" } });
    if (this.failing !== null) return send(this.failing, { error: { message: "Internal Server Error" } });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
    } catch {
      return send(422, { detail: "body is not JSON" });
    }
    const principal = String(route.startsWith("key/") ? body.key : body.team_id);
    // LiteLLM 1.80's words, the principal between them.
    if (this.unknown.has(principal)) return send(404, { detail: { error: `${route.startsWith("key/") ? "Key" : "Team"} ${principal} not found` } });
    this.calls.push({ route, principal, at: Date.now() });
    const blocked = route.endsWith("/block");
    send(200, route.startsWith("key/") ? { token: principal, blocked } : { team_id: principal, blocked });
  }
}
