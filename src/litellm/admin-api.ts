import type { PrincipalKind } from "../platform/config.js";
import { type UnknownPrincipal, unknownPrincipalIn } from "./admin-answers.js";

/** One call to LiteLLM's admin API: block or unblock a key (by its hash) or a team. */
export type AdminCall = { kind: PrincipalKind; principal: string; action: "block" | "unblock" };

export type AdminAnswer =
  | { ok: true }
  | {
      ok: false;
      /** Trying again cannot help: LiteLLM answered in its own words that the key or team cannot exist. */
      final: true;
      unknown: UnknownPrincipal;
      error: string;
    }
  | {
      ok: false;
      final: false;
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
 * LiteLLM's admin API with its master key. A failed call is final only when LiteLLM's answer is
 * one of its own "this principal cannot exist" answers (admin-answers.ts says which, and which
 * LiteLLM source they were read from); any other failure is retried by the caller. The key goes
 * only into the request's header: no error, log line or answer this returns carries it (nor the
 * request's headers, nor the answer's body).
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
      const unknown = unknownPrincipalIn(call, response.status, await boundedJson(response));
      if (unknown !== null) {
        return { ok: false, final: true, unknown, error: `LiteLLM answered POST /${route} with ${response.status} (${unknown})` };
      }
      return { ok: false, final: false, unreachable: false, uncertain: false, error: `LiteLLM answered POST /${route} with ${response.status}` };
    },
  };
}

// Failures in which the request never left: nothing can land late.
const NEVER_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);
// LiteLLM's answers that end an action are a few hundred bytes; a longer body is not one of them.
const ANSWER_BYTES = 4096;

/** The answer's body as JSON when it is JSON of at most ANSWER_BYTES, else null; the rest is never read. */
async function boundedJson(response: Response): Promise<unknown> {
  const reader = response.body?.getReader();
  if (reader === undefined) return null;
  const chunks: Uint8Array[] = [];
  let size = 0;
  let complete = false;
  while (size <= ANSWER_BYTES) {
    // The call's timeout cuts a body that trickles in: that read fails, and the answer is no answer.
    const read = await reader.read().catch(() => null);
    if (read === null) break;
    if (read.done) {
      complete = true;
      break;
    }
    const value = read.value;
    chunks.push(value);
    size += value.byteLength;
  }
  await reader.cancel().catch(() => {});
  if (!complete || size > ANSWER_BYTES) return null;
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    return null;
  }
}

/** The cause a fetch failed with (refused, reset, timed out), without anything of the request. */
function transportError(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (error instanceof DOMException && error.name === "TimeoutError") return `no answer within ${CALL_TIMEOUT_MS} ms`;
  if (typeof cause?.code === "string") return cause.code;
  return error instanceof Error ? error.name : "unknown error";
}
