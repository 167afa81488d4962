import { CALLBACK_REFUSAL_CATALOG, type CallbackRefusalReason } from "../usage/usage-event.js";

/** Where an item was quarantined: refused at the door (or by the gateway backfill), or by the worker. */
export type QuarantineStage = "receiver" | "worker";

type QuarantineReasonEntry = { stage: QuarantineStage; meaning: string; whatToDo: string };

/** A callback refusal, with the meaning the LiteLLM reader's catalog gives it. */
const refusedAtTheDoor = (reason: CallbackRefusalReason, whatToDo: string) =>
  ({ stage: "receiver", meaning: CALLBACK_REFUSAL_CATALOG[reason], whatToDo }) as const;

/**
 * Every reason an item is kept in quarantine: the stage that keeps it, what it means and what an
 * operator does. A quarantine entry takes only these. docs/reference/quarantine.md has a row for
 * each, checked with its stage by a test.
 */
export const QUARANTINE_REASON_CATALOG = {
  invalid_json: refusedAtTheDoor("invalid_json", "a gateway bug: fix or upgrade it, then replay"),
  item_too_large: refusedAtTheDoor("item_too_large", "replay refuses it: charge or grant by hand if it should be billed"),
  invalid_payload: refusedAtTheDoor("invalid_payload", "a gateway bug or a new LiteLLM field format: fix or upgrade, then replay"),
  no_idempotency_key: refusedAtTheDoor("no_idempotency_key", "cannot be charged safely: charge by hand if needed"),
  invalid_idempotency_key: refusedAtTheDoor("invalid_idempotency_key", "a gateway or client bug: cannot be charged as sent"),
  invalid_billing_account: refusedAtTheDoor("invalid_billing_account", "a gateway or client bug: cannot be charged as sent"),
  key_metadata_unavailable: {
    stage: "receiver",
    meaning: "the gateway backfill found a call whose key is in none of LiteLLM's key tables it can read",
    whatToDo: "replay if the next BILLING_ACCOUNT_FROM source should pay; otherwise leave it",
  },
  spend_log_field_too_large: {
    stage: "receiver",
    meaning: "the gateway backfill found a call with a field billing reads over 64 KiB in LiteLLM's database",
    whatToDo: "look at the call in LiteLLM and charge it by hand if it is real; replay refuses it",
  },
  no_billing_account: {
    stage: "worker",
    meaning: "none of the BILLING_ACCOUNT_FROM sources is set",
    whatToDo: "give the key an account in LiteLLM; assign the kept ones an account, then replay",
  },
  removed_from_queue: {
    stage: "worker",
    meaning: "an operator emptied or cleaned queued jobs in the queue UI; their calls were kept here first",
    whatToDo: "replay: each is charged once",
  },
  unpriced_model: {
    stage: "worker",
    meaning: "no rates and no usable reported cost for the call's model",
    whatToDo: "add the model to the price book, SIGHUP the workers, replay",
  },
  price_divergence: {
    stage: "worker",
    meaning: "with on_divergence: quarantine, the rates' cost and LiteLLM's differ by a credit or more",
    whatToDo: "fix the book or choose another on_divergence, SIGHUP the workers, replay",
  },
  receipt_conflict: {
    stage: "worker",
    meaning: "the same call (key and time) came back with other usage; the first receipt stands",
    whatToDo: "inspect: usually a gateway bug; replay does not charge it while the first receipt stands",
  },
  invalid_job_event: {
    stage: "worker",
    meaning: "a queued event this version cannot read",
    whatToDo: "look at the detail; fix and replay",
  },
  unrecordable: {
    stage: "worker",
    meaning: "PostgreSQL refused the event (the rest of its job was charged)",
    whatToDo: "look at the detail; fix and replay",
  },
  balance_out_of_range: {
    stage: "worker",
    meaning: "the charge would take the balance below −(2^53 − 1) credits; no receipt was written",
    whatToDo: "replay once the balance leaves room",
  },
  charge_out_of_range: {
    stage: "worker",
    meaning: "one call over 2^53 − 1 credits",
    whatToDo: "never fits: a pricing or gateway error to look into, not a charge to replay",
  },
} as const satisfies Record<string, QuarantineReasonEntry>;

export type QuarantineReason = keyof typeof QUARANTINE_REASON_CATALOG;
