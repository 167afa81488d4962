import type { PrincipalKind } from "../platform/config.js";

/** One call to LiteLLM's admin API: block or unblock a key (by its hash) or a team. */
export type AdminCall = { kind: PrincipalKind; principal: string; action: "block" | "unblock" };

export type AdminAnswer =
  | { ok: true }
  /** `final`: trying again cannot help (the gateway does not know the principal). `unreachable`: no HTTP answer at all. */
  | { ok: false; final: boolean; unreachable: boolean; error: string };

// A call that has not answered by then is a failure, retried with backoff like any other.
const CALL_TIMEOUT_MS = 5_000;

export type LitellmAdmin = { send: (call: AdminCall) => Promise<AdminAnswer> };

/**
 * LiteLLM's admin API with its master key. The key goes only into the request's header: no
 * error, log line or answer this returns carries it (nor the request's headers).
 */
export function createLitellmAdmin(settings: { url: string; masterKey: string }): LitellmAdmin {
  const base = settings.url.endsWith("/") ? settings.url : `${settings.url}/`;
  return {
    async send(call) {
      const route = `${call.kind}/${call.action}`;
      const body = call.kind === "key" ? { key: call.principal } : { team_id: call.principal };
      let response: Response;
      try {
        response = await fetch(new URL(route, base), {
          method: "POST",
          headers: { authorization: `Bearer ${settings.masterKey}`, "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
          redirect: "error",
        });
      } catch (error) {
        return { ok: false, final: false, unreachable: true, error: `LiteLLM did not answer POST /${route}: ${transportError(error)}` };
      }
      // The answer's body is not needed and may be anything: it is not read.
      await response.body?.cancel().catch(() => {});
      if (response.ok) return { ok: true };
      const final = response.status === 404;
      return { ok: false, final, unreachable: false, error: `LiteLLM answered POST /${route} with ${response.status}${final ? " (it does not know this principal)" : ""}` };
    },
  };
}

/** The cause a fetch failed with (refused, reset, timed out), without anything of the request. */
function transportError(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (error instanceof DOMException && error.name === "TimeoutError") return `no answer within ${CALL_TIMEOUT_MS} ms`;
  if (typeof cause?.code === "string") return cause.code;
  return error instanceof Error ? error.name : "unknown error";
}
