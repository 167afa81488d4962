import { readFileSync } from "node:fs";
import { normaliseCallbackItem, type ReadOptions } from "../../src/litellm/normalise.js";
import { type BillingAccountSource, DEFAULT_BILLING_ACCOUNT_FROM } from "../../src/platform/config.js";

/** LiteLLM's own StandardLoggingPayload example (copied from LiteLLM's fixtures). */
export const STANDARD_LOGGING_PAYLOAD: Record<string, unknown> = JSON.parse(
  readFileSync(new URL("../fixtures/standard_logging_payload.json", import.meta.url), "utf8"),
);

type Overrides = Record<string, unknown> & { metadata?: Record<string, unknown> };

/** The LiteLLM example with its id, account and any field replaced; metadata is merged. */
export function litellmPayload(id: string, account: string | null, overrides: Overrides = {}) {
  const base = structuredClone(STANDARD_LOGGING_PAYLOAD) as Record<string, unknown> & {
    metadata: Record<string, unknown>;
  };
  const { metadata, ...rest } = overrides;
  return {
    ...base,
    id,
    ...rest,
    metadata: { ...base.metadata, user_api_key_team_id: account, ...metadata },
  };
}

export const DEFAULT_READ: ReadOptions = { billingAccountFrom: DEFAULT_BILLING_ACCOUNT_FROM };
export const readFrom = (...sources: BillingAccountSource[]): ReadOptions => ({ billingAccountFrom: sources });
/** The receiver's default bound on items per body. */
export const LIMITS = { maxItems: 4096 };

/** The usage event an item is read as, failing the test when it is refused. */
export function accepted(item: unknown, options = DEFAULT_READ) {
  const result = normaliseCallbackItem(item, options);
  if (!result.ok) throw new Error(`rejected: ${JSON.stringify(result.rejected)}`);
  return result.event;
}

/** The refusal of an item, failing the test when it is read. */
export function rejected(item: unknown, options = DEFAULT_READ) {
  const result = normaliseCallbackItem(item, options);
  if (result.ok) throw new Error("accepted");
  return result.rejected;
}
