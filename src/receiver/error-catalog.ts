/**
 * Every code of the one error shape at the HTTP edge (`{"error": {"code", "message"}}`): the status
 * it is sent with and what it tells the caller. `sendError` takes only these. docs/reference/errors.md
 * has a row for each, checked by a test.
 */
export const ERROR_CATALOG = {
  // Any route.
  invalid_request: { status: 400, meaning: "a parameter, query or body field is invalid; the message and issues name it" },
  bad_url: { status: 400, meaning: "the path does not decode (percent-encoded bytes that are not UTF-8)" },
  empty_body: { status: 400, meaning: "a JSON content type with an empty body" },
  invalid_content_length: { status: 400, meaning: "the body's size does not match its Content-Length header" },
  // Fastify's own refusals not named above keep the status Fastify gave them.
  bad_request: { status: "4xx", meaning: "the request was refused before any route read it, with the status Fastify chose" },
  unauthorized: { status: 401, meaning: "the route's token (or the queue UI's password) is missing or wrong" },
  not_found: { status: 404, meaning: "no such route" },
  body_too_large: { status: 413, meaning: "the body is over its route's limit (MAX_BODY_BYTES on the callback)" },
  unsupported_media_type: { status: 415, meaning: "the route does not read this Content-Type" },
  internal_error: { status: 500, meaning: "a fault of the service; it is logged" },
  database_unavailable: { status: 503, meaning: "PostgreSQL does not answer; try again after Retry-After" },
  // The callback.
  empty_batch: { status: 400, meaning: "the callback body holds no item" },
  invalid_json: { status: 400, meaning: "the callback body is no JSON array, object or ndjson, or none of its items is JSON" },
  too_many_items: { status: 413, meaning: "the callback body holds more than MAX_ITEMS_PER_REQUEST items" },
  receiver_busy: { status: 503, meaning: "the receiver holds MAX_BYTES_IN_FLIGHT of bodies already; try again after Retry-After" },
  queue_unavailable: { status: 503, meaning: "the queue cannot take the batch now (Redis down, backlog, replicas); try again after Retry-After" },
  // The account API.
  account_not_found: { status: 404, meaning: "no such account" },
  receipt_not_found: { status: 404, meaning: "no receipt for this idempotency key" },
  grant_reference_conflict: { status: 409, meaning: "the reference was used for another grant" },
  debit_reference_conflict: { status: 409, meaning: "the reference was used for another debit" },
  transfer_reference_conflict: { status: 409, meaning: "the reference was used for another transfer" },
  reversal_reference_conflict: { status: 409, meaning: "the reference was used for another reversal" },
  insufficient_credits: { status: 422, meaning: "the transfer is more than the source's available credits; nothing moved" },
  balance_out_of_range: { status: 422, meaning: "the balance would pass ±(2^53 − 1) credits; nothing was committed" },
  reversal_exceeds_charge: { status: 422, meaning: "the receipt's reversals would sum past its charge; nothing was given back" },
  // The queue UI.
  invalid_state: { status: 400, meaning: "jobs cannot be cleaned in this state" },
  queue_ui_read_only: { status: 403, meaning: "a write to the queue UI while QUEUE_UI_ACTIONS=off" },
  queue_ui_action_refused: { status: 403, meaning: "an action the queue UI never allows" },
  queue_not_found: { status: 404, meaning: "no such queue" },
  job_not_found: { status: 404, meaning: "no such job" },
  job_active: { status: 409, meaning: "a worker holds the job; it was not removed" },
  queue_ui_removal_failed: { status: 503, meaning: "a removal stopped part-way; what it removed is in quarantine" },
} as const satisfies Record<string, { status: number | "4xx"; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

/** The codes the catalog sends with a status `S` (a number: every code with a fixed status). */
export type ErrorCodeSentWith<S> = { [C in ErrorCode]: (typeof ERROR_CATALOG)[C]["status"] extends S ? C : never }[ErrorCode];
