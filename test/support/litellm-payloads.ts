import { readFileSync } from "node:fs";

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
