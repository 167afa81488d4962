import type { PrincipalKind } from "../platform/config.js";

/** One call to LiteLLM's admin API: block or unblock a key (by its hash) or a team. */
export type AdminCall = { kind: PrincipalKind; principal: string; action: "block" | "unblock" };

export type AdminAnswer =
  | { ok: true }
  | {
      ok: false;
      /** Trying again cannot help: LiteLLM says it does not know the key or team. */
      final: boolean;
      /** No HTTP answer at all: LiteLLM (or the way to it) is down. */
      unreachable: boolean;
      /** The request may have reached LiteLLM and may still take effect, late (a timeout, a connection cut mid-call). */
      uncertain: boolean;
      error: string;
    };

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
        const cause = transportError(error);
        return { ok: false, final: false, unreachable: true, uncertain: !NEVER_SENT.has(cause), error: `LiteLLM did not answer POST /${route}: ${cause}` };
      }
      if (response.ok) {
        // The answer's body is not needed and may be anything: it is not read.
        await response.body?.cancel().catch(() => {});
        return { ok: true };
      }
      const final = response.status === 404 && (await saysNotFound(response));
      await response.body?.cancel().catch(() => {});
      const why = final ? " (it does not know this principal)" : "";
      return { ok: false, final, unreachable: false, uncertain: false, error: `LiteLLM answered POST /${route} with ${response.status}${why}` };
    },
  };
}

// Failures in which the request never left: nothing can land late.
const NEVER_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);
const NOT_FOUND_ANSWER_BYTES = 4096;

/**
 * LiteLLM's own 404 for a key or team it does not know ("Key <hash> not found"), as
 * opposed to a 404 from a wrong path or a proxy in front of it, which is retried like any failure.
 */
async function saysNotFound(response: Response): Promise<boolean> {
  const reader = response.body?.getReader();
  if (reader === undefined) return false;
  let text = "";
  while (text.length < NOT_FOUND_ANSWER_BYTES) {
    const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
    if (done || value === undefined) break;
    text += Buffer.from(value).toString("utf8");
  }
  await reader.cancel().catch(() => {});
  // LiteLLM names the key or team between the two ("Key <hash> not found", "Team <id> not found").
  return /\b(key|team)\b[\s\S]{0,600}?\bnot found\b/i.test(text.slice(0, NOT_FOUND_ANSWER_BYTES));
}

/** The cause a fetch failed with (refused, reset, timed out), without anything of the request. */
function transportError(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (error instanceof DOMException && error.name === "TimeoutError") return `no answer within ${CALL_TIMEOUT_MS} ms`;
  if (typeof cause?.code === "string") return cause.code;
  return error instanceof Error ? error.name : "unknown error";
}
