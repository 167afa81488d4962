/**
 * Which call a delivery stands for when LiteLLM's request id already has a receipt. The id alone
 * does not say: a provider may repeat a response id for another call, and a caller may reuse one
 * `x-litellm-call-id` on a provider that returns none. The id together with the time LiteLLM's own
 * clock gave the call (the event's time: LiteLLM's endTime, else its startTime) does. Every
 * redelivery carries that time: a callback sent again, a retried job and a quarantine replay carry
 * the very event, and the gateway backfill reads it from LiteLLM's spend log, which keeps it to the
 * millisecond (rounded where the callback's is truncated), hence SAME_CALL_MS. A caller cannot
 * set it. Usage is no part of it: a copy read from the spend log may read usage detail differently
 * from its callback, and must never become a second charge.
 */
export const SAME_CALL_MS = 1;

// ECMAScript's time range, less the tolerance: a time near its end has no neighbour to name.
const LAST_TIME_MS = 8.64e15 - SAME_CALL_MS;

/** The call's time in epoch milliseconds, or null where the event has none that can be read. */
export function callTimeMs(eventTime: string | null): number | null {
  if (eventTime === null) return null;
  const time = Date.parse(eventTime);
  return Number.isNaN(time) || Math.abs(time) > LAST_TIME_MS ? null : time;
}

/** Whether two deliveries of one request id are the same call; null when either has no time. */
export function sameCall(first: number | null, other: number | null): boolean | null {
  if (first === null || other === null) return null;
  return Math.abs(first - other) <= SAME_CALL_MS;
}

/**
 * The receipt key of a further call under a request id already charged for another call: the id,
 * `@`, the call's time (`chatcmpl-1@2026-01-02T03:04:05.678Z`). Derived from what every
 * redelivery of the call carries, so each lands on this one receipt.
 */
export function reusedIdKey(requestId: string, timeMs: number): string {
  return `${requestId}@${new Date(timeMs).toISOString()}`;
}

/** The keys a copy of the call at `timeMs` may have been charged under (the exact one first). */
export function reusedIdKeysNear(requestId: string, timeMs: number): string[] {
  const keys = [reusedIdKey(requestId, timeMs)];
  for (let offset = 1; offset <= SAME_CALL_MS; offset++) keys.push(reusedIdKey(requestId, timeMs - offset), reusedIdKey(requestId, timeMs + offset));
  return keys;
}
