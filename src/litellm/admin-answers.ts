import { isLitellmKeyHash } from "../usage/usage-event.js";
import type { AdminCall } from "./admin-api.js";

/**
 * LiteLLM's own answers to a block or unblock that say the key or team cannot exist, so that
 * trying again cannot help. Read from LiteLLM's source, BerriAI/litellm as of early 2026
 * (key_management_endpoints.py at 00670428, auth_checks.py at 000d8196, utils.py at 00099957,
 * team_endpoints.py and _types.py in several versions, which agree; older versions lack only the
 * key-format check, so they never answer its 400):
 * - proxy/management_endpoints/key_management_endpoints.py block_key / unblock_key: a key that
 *   fails proxy/utils.py is_valid_api_key (not `sk-…`, not 64 hex) raises
 *   ProxyException("Invalid key format.", bad_request_error, param "key", 400); with
 *   `store_audit_logs` on, a key not in the database raises ProxyException("Key <key> not found",
 *   bad_request_error, "key", 404); by default the update finds nothing and the cache refresh
 *   (proxy/auth/auth_checks.py get_key_object) raises ProxyException("Authentication Error,
 *   Invalid proxy server token passed. key=<hash>, not found in db. Create key via
 *   `/key/generate` call.", token_not_found_in_db, "key", 401);
 * - proxy/management_endpoints/team_endpoints.py block_team / unblock_team: a team not in the
 *   database raises FastAPI's HTTPException(404, {"error": "Team not found, passed team_id=<id>"}),
 *   which FastAPI answers as {"detail": {"error": …}};
 * - proxy/_types.py ProxyException.to_dict and the proxy's ProxyException handler: the body is
 *   {"error": {"message", "type", "param", "code"}}, `code` the status as text.
 * A wrong master key that starts with `sk-` gets the very same 401 token_not_found_in_db from
 * user_api_key_auth, naming the hash of that wrong key: only a message naming the key that was
 * sent says the key is gone. Anything else (a proxy's or a wrong path's 404, a 401 for the master
 * key, a rewording in a later LiteLLM) is not recognised and so is retried: the safe side.
 */
export type UnknownPrincipal = "key_not_in_database" | "key_not_found" | "key_format_refused" | "team_not_found";

export function unknownPrincipalIn(call: AdminCall, status: number, body: unknown): UnknownPrincipal | null {
  if (call.kind === "team") {
    return status === 404 && sameJson(body, { detail: { error: `Team not found, passed team_id=${call.principal}` } }) ? "team_not_found" : null;
  }
  const error = isObject(body) && isObject(body.error) ? body.error : null;
  if (error === null || error.param !== "key" || error.code !== String(status)) return null;
  const key = call.principal;
  if (status === 401 && error.type === "token_not_found_in_db") {
    const words = `Authentication Error, Invalid proxy server token passed. key=${key}, not found in db. Create key via \`/key/generate\` call.`;
    return error.message === words ? "key_not_in_database" : null;
  }
  if (status === 404 && error.type === "bad_request_error") return error.message === `Key ${key} not found` ? "key_not_found" : null;
  // Only for a key LiteLLM's own rule refuses: for any other, something between changed the request.
  if (status === 400 && error.type === "bad_request_error" && error.message === "Invalid key format.") {
    return litellmAcceptsKey(key) ? null : "key_format_refused";
  }
  return null;
}

/** LiteLLM's is_valid_api_key: a key itself (`sk-…`) or its hash, 3 to 100 characters. */
function litellmAcceptsKey(key: string): boolean {
  return key.length >= 3 && key.length <= 100 && (/^sk-[A-Za-z0-9_-]+$/.test(key) || isLitellmKeyHash(key));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The same JSON value, key order aside: LiteLLM's answer has exactly these fields. */
function sameJson(value: unknown, expected: unknown): boolean {
  if (!isObject(expected)) return value === expected;
  if (!isObject(value)) return false;
  const keys = Object.keys(expected);
  return Object.keys(value).length === keys.length && keys.every((key) => sameJson(value[key], expected[key]));
}
