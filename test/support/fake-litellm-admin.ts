import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A FAKE of LiteLLM's admin API, for what cannot run here (a LiteLLM proxy with its database):
 * POST /key/block, /key/unblock ({"key"}), /team/block, /team/unblock ({"team_id"}), answered
 * with the status and body LiteLLM's source gives for each case (see src/litellm/admin-answers.ts
 * for where each is read):
 * - a bearer other than the master key: 401 token_not_found_in_db naming that bearer's hash when
 *   it starts with `sk-`, else 401 auth_error;
 * - a key LiteLLM's is_valid_api_key refuses (not `sk-…`, not 64 hex): 400 "Invalid key format.";
 * - a key it does not know: 401 token_not_found_in_db (LiteLLM's default), or 404 "Key … not
 *   found" with `store_audit_logs` on (`storeAuditLogs`);
 * - a team it does not know: 404 {"detail": {"error": "Team not found, passed team_id=…"}};
 * - any other path: FastAPI's 404 {"detail": "Not Found"};
 * - otherwise 200 with the object, `blocked` set.
 * It records every call it answered with 200 and every request that reached it; it can answer
 * 500 on demand, stand behind a proxy that answers every request itself, and stop listening
 * (connections refused) and listen again on the same port.
 */
export class FakeLitellmAdmin {
  readonly calls: Array<{ route: string; principal: string; at: number }> = [];
  /** Every request that reached it, answered or not, with the headers it carried. */
  readonly requests: Array<{ route: string; principal: string | null; authorization: string | undefined; status: number }> = [];
  /** LiteLLM's `store_audit_logs`: an unknown key is a 404 rather than a 401. */
  storeAuditLogs = false;
  private failing: number | null = null;
  private proxyAnswer: { status: number; body: unknown } | null = null;
  private acceptedKey: string;
  private readonly unknown = new Set<string>();
  private server: Server | null = null;
  private port = 0;

  constructor(readonly masterKey: string) {
    this.acceptedKey = masterKey;
  }

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

  /** A proxy in front answers every request with this, before LiteLLM sees it, until `behindProxy(null)`. */
  behindProxy(answer: { status: number; body: unknown } | null): void {
    this.proxyAnswer = answer;
  }

  /** LiteLLM's master key is now `key` (the one it was made with, when null): callers with the old one are refused. */
  changeMasterKey(key: string | null): void {
    this.acceptedKey = key ?? this.masterKey;
  }

  /** LiteLLM has no such key or team. */
  forget(principal: string): void {
    this.unknown.add(principal);
  }

  /** LiteLLM has the key or team (again). */
  remember(principal: string): void {
    this.unknown.delete(principal);
  }

  callsTo(route: string, principal?: string): number {
    return this.calls.filter((call) => call.route === route && (principal === undefined || call.principal === principal)).length;
  }

  /** Requests for `principal` on `route`, whatever they were answered. */
  requestsTo(route: string, principal: string): number {
    return this.requests.filter((request) => request.route === route && request.principal === principal).length;
  }

  private async answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const route = (request.url ?? "").replace(/^\//, "");
    let body: Record<string, unknown> | null = null;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
    } catch {
      body = null;
    }
    const named = route.startsWith("key/") ? body?.key : body?.team_id;
    const principal = typeof named === "string" ? named : null;
    const send = (status: number, answer: unknown) => {
      this.requests.push({ route, principal, authorization: request.headers.authorization, status });
      response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(answer));
    };
    if (this.proxyAnswer !== null) return send(this.proxyAnswer.status, this.proxyAnswer.body);
    if (request.method !== "POST" || !/^(key|team)\/(block|unblock)$/.test(route)) return send(404, { detail: "Not Found" });
    const bearer = request.headers.authorization?.replace(/^Bearer /, "") ?? request.headers["x-litellm-api-key"];
    if (bearer !== this.acceptedKey) return send(401, notAKey(bearer));
    if (this.failing !== null) return send(this.failing, { error: { message: "Internal Server Error" } });
    if (principal === null) return send(422, { detail: [{ type: "missing", loc: ["body"], msg: "Field required" }] });
    if (route.startsWith("key/")) {
      if (!acceptsKey(principal)) return send(400, proxyError("Invalid key format.", "bad_request_error", 400));
      if (this.unknown.has(principal)) {
        if (this.storeAuditLogs) return send(404, proxyError(`Key ${principal} not found`, "bad_request_error", 404));
        return send(401, keyNotInDatabase(principal));
      }
    } else if (this.unknown.has(principal)) {
      return send(404, { detail: { error: `Team not found, passed team_id=${principal}` } });
    }
    this.calls.push({ route, principal, at: Date.now() });
    const blocked = route.endsWith("/block");
    send(200, route.startsWith("key/") ? { token: principal, blocked } : { team_id: principal, blocked });
  }
}

/** LiteLLM's ProxyException, as its handler writes it. */
function proxyError(message: string, type: string, status: number) {
  return { error: { message, type, param: "key", code: String(status) } };
}

function keyNotInDatabase(hash: string) {
  const message = `Authentication Error, Invalid proxy server token passed. key=${hash}, not found in db. Create key via \`/key/generate\` call.`;
  return proxyError(message, "token_not_found_in_db", 401);
}

/** What user_api_key_auth answers a bearer that is not the master key and not a key it knows. */
function notAKey(bearer: string | string[] | undefined) {
  if (typeof bearer === "string" && bearer.startsWith("sk-")) return keyNotInDatabase(createHash("sha256").update(bearer).digest("hex"));
  return { error: { message: "Authentication Error, LiteLLM Virtual Key expected. Received=****, expected to start with 'sk-'.", type: "auth_error", param: "None", code: "401" } };
}

/** LiteLLM's is_valid_api_key. */
function acceptsKey(key: string): boolean {
  return key.length >= 3 && key.length <= 100 && (/^sk-[A-Za-z0-9_-]+$/.test(key) || /^[a-fA-F0-9]{64}$/.test(key));
}
