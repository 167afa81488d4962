import { type BillingAccountSource, CLIENT_SETTABLE_SOURCES } from "../platform/config.js";
import { canonicalId } from "../usage/storable-text.js";
import { isLitellmKeyHash } from "../usage/usage-event.js";
import { isRecord } from "./payload-schema.js";

/** Where each account source is read, in the payload LiteLLM sends. */
const ACCOUNT_SOURCE_FIELDS: Record<BillingAccountSource, ReadonlyArray<readonly string[]>> = {
  key_metadata: [["metadata", "user_api_key_auth_metadata", "billing_account_id"]],
  team: [["metadata", "user_api_key_team_id"]],
  user: [["metadata", "user_api_key_user_id"]],
  org: [["metadata", "user_api_key_org_id"]],
  spend_logs_metadata: [["metadata", "spend_logs_metadata", "billing_account_id"]],
  end_user: [["metadata", "user_api_key_end_user_id"], ["end_user"]],
};

export type ResolvedAccount =
  | {
      ok: true;
      billingAccountId: string | null;
      /** The account a caller named in spend_logs_metadata when a trusted source chose another one. */
      claimedBillingAccountId: string | null;
    }
  | { ok: false; field: string; message: string };

type AccountFieldValue = { field: string; text: string | null; problem: string | null };

/** The first non-blank value among `paths`, as canonical account id text or a problem. */
function accountFieldValue(payload: Record<string, unknown>, paths: ReadonlyArray<readonly string[]>): AccountFieldValue | null {
  for (const path of paths) {
    let value: unknown = payload;
    for (const step of path) value = isRecord(value) ? value[step] : undefined;
    // A blank value is no value: LiteLLM writes "" for fields the call did not set.
    if (value === null || value === undefined || (typeof value === "string" && value.trim() === "")) continue;
    const field = path.join(".");
    const text = typeof value === "string" ? value : Number.isSafeInteger(value) ? String(value) : null;
    if (text === null) return { field, text: null, problem: `expected text or a whole number, got ${typeof value}` };
    const canonical = canonicalId(text);
    return canonical.ok ? { field, text: canonical.value, problem: null } : { field, text: null, problem: canonical.message };
  }
  return null;
}

/**
 * The paying account: the first source in `sources` that has a value. A chosen value that
 * cannot be an account id is an error rather than a reason to bill the next source's account.
 * When a trusted source pays while the caller's spend_logs_metadata names another account,
 * that claim is returned too, so the receipt can say it was overruled.
 */
export function resolveBillingAccount(payload: Record<string, unknown>, sources: readonly BillingAccountSource[]): ResolvedAccount {
  for (const source of sources) {
    const found = accountFieldValue(payload, ACCOUNT_SOURCE_FIELDS[source]);
    if (found === null) continue;
    if (found.text === null) return { ok: false, field: found.field, message: found.problem! };
    const claim = CLIENT_SETTABLE_SOURCES.includes(source)
      ? null
      : accountFieldValue(payload, ACCOUNT_SOURCE_FIELDS.spend_logs_metadata)?.text ?? null;
    return { ok: true, billingAccountId: found.text, claimedBillingAccountId: claim !== found.text ? claim : null };
  }
  return { ok: true, billingAccountId: null, claimedBillingAccountId: null };
}

/**
 * The key (by its hash) and team LiteLLM authenticated for the call, where each is an id:
 * the principals enforcement may block. Both are filled by LiteLLM from the key, never by the
 * caller; one that is not usable as an id, or a "hash" that is not LiteLLM's, is left out, never
 * a reason to refuse the charge.
 */
export function principalsOf(payload: Record<string, unknown>): { keyHash?: string; teamId?: string } {
  const principals: { keyHash?: string; teamId?: string } = {};
  const keyHash = accountFieldValue(payload, [["metadata", "user_api_key_hash"]]);
  if (keyHash?.text && isLitellmKeyHash(keyHash.text)) principals.keyHash = keyHash.text;
  const teamId = accountFieldValue(payload, ACCOUNT_SOURCE_FIELDS.team);
  if (teamId?.text) principals.teamId = teamId.text;
  return principals;
}
