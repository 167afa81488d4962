import type { FastifyInstance, FastifyReply } from "fastify";
import type { ReceiverDeps } from "../platform/deps.js";
import { bearerToken, bearerTokenMatches } from "./auth.js";
import type { ErrorCodeSentWith } from "./error-catalog.js";
import { sendError } from "./errors.js";
import type { CallbackRefusalReason, RejectedItem, UsageEvent } from "../usage/usage-event.js";
import { enqueueReplicated, type Replication } from "../platform/queue-producer.js";
import { withTimeout } from "../platform/with-timeout.js";
import { setImmediate as nextTurn } from "node:timers/promises";
import { type BodyLimits, type BodyRefusal, frameCallbackBody, readCallbackItem, UnparseableItem, unreadableBody } from "../litellm/callback-body.js";
import { normaliseCallbackItem, type ReadOptions } from "../litellm/normalise.js";

const CALLBACK_CONTENT_TYPES = ["application/json", "application/x-ndjson"];
// Past this the client is told to come back rather than wait: LiteLLM drops a batch on a non-2xx.
const ENQUEUE_TIMEOUT_MS = 5_000;
const RETRY_AFTER_SECONDS = "5";
// The 207 answer lists this many refusals in full and counts the rest: its size stays bounded.
const REJECTIONS_LISTED = 100;
const ISSUES_LISTED = 10;
/**
 * Items are read a few at a time, the event loop turning between them, so health checks and
 * other requests are answered while a large body is read: about 20 ms of parsing on one core.
 */
const VALUES_READ_PER_TURN = 50_000;

type RejectedAnswer = { index: number; id: string | null; reason: CallbackRefusalReason; issues: unknown[] };

/** `POST /v1/callbacks/litellm`: validates each item, queues the good ones, quarantines the rest. */
export async function callbackRoutes(app: FastifyInstance, deps: ReceiverDeps): Promise<void> {
  const { settings, metrics } = deps;
  const limits: BodyLimits = { maxItems: settings.maxItemsPerRequest };
  const inFlight = bodyBudget(settings.maxBytesInFlight);

  // The body decides the log format, so the raw text is parsed here, not by Fastify's JSON parser.
  app.removeAllContentTypeParsers();
  // As one buffer, decoded once: cheaper than decoding every chunk of a multi-megabyte batch.
  app.addContentTypeParser(CALLBACK_CONTENT_TYPES, { parseAs: "buffer" }, (_request, body, done) => done(null, body));

  app.addHook("onRequest", async (request, reply) => {
    if (!bearerTokenMatches(request.headers.authorization, settings.ingestTokens)) {
      // Counted, never logged: a wrong token may be a right one for something else.
      metrics.requestsUnauthorized.inc({ reason: bearerToken(request.headers.authorization) === null ? "no_token" : "unknown_token" });
      return sendError(reply, "unauthorized", "a valid ingest bearer token is required");
    }
    // Reserved before a byte of the body is read: bodies being received and parsed at once are
    // the receiver's memory, so past the budget the caller is told to come back instead.
    const declared = Number(request.headers["content-length"]);
    const bytes = Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, settings.maxBodyBytes) : settings.maxBodyBytes;
    if (!inFlight.reserve(bytes)) {
      // The unread body is drained and dropped by Node as it arrives, never held.
      metrics.requestsRefused.inc({ reason: "bytes_in_flight" });
      return unavailable(reply, "receiver_busy", "the receiver is at its limit of bodies in flight");
    }
    // Released once, on whichever comes first: the answer's end, or the connection's (a pipelined
    // request still queued when its socket closes never gets an answer to close).
    const socket = request.raw.socket;
    const release = () => {
      reply.raw.off("close", release);
      socket.off("close", release);
      inFlight.release(bytes);
    };
    reply.raw.once("close", release);
    socket.once("close", release);
  });

  app.post("/v1/callbacks/litellm", { bodyLimit: settings.maxBodyBytes }, async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    // The raw batch and its parsed items (prompts and all) are dropped here, before the first
    // await, so they die young instead of being held while Redis answers.
    request.body = undefined;
    const read = await readCallbackItems(
      body,
      limits,
      { billingAccountFrom: settings.billingAccountFrom },
      // The socket, not the request: a request whose body was read to its end is destroyed already.
      () => request.raw.socket.destroyed,
    );
    // Its caller is gone: nothing can be answered, and reading on would hold a body whose bytes
    // were already given back to the in-flight budget when its connection closed.
    if (read === CALLER_GONE) return reply.hijack();
    if (!read.ok) {
      if (read.code === "too_many_items") metrics.requestsRefused.inc({ reason: "too_many_items" });
      return sendError(reply, read.code, read.message);
    }
    const { events, rejected, answers, overruled } = read;
    metrics.eventsReceived.inc(events.length + rejected.length);

    const waiting = await withTimeout(deps.usageQueue.getWaitingCount(), ENQUEUE_TIMEOUT_MS).catch(() => null);
    if (waiting === null) return unavailable(reply, "queue_unavailable", "the queue does not answer");
    if (waiting > settings.queueHighWater) return unavailable(reply, "queue_unavailable", "the queue backlog is over its high-water mark");
    let replication: Replication;
    try {
      replication = await withTimeout(
        enqueueReplicated(deps.usageQueue, deps.redis, { events, rejected }, settings.queueReplicaAcks),
        ENQUEUE_TIMEOUT_MS,
      );
    } catch (error) {
      request.log.warn({ err: error }, "enqueue failed");
      // Job ids are content hashes, so whatever did reach Redis is not queued twice on the retry.
      return unavailable(reply, "queue_unavailable", "the queue could not take the batch");
    }
    if (replication.acknowledged < replication.required) {
      // Queued, but on the master alone: a failover now would lose it, so no 2xx promises otherwise.
      // Charged once all the same if the master lives; a retry of the batch adds nothing.
      metrics.requestsRefused.inc({ reason: "not_replicated" });
      request.log.warn(replication, "batch queued but not replicated in time");
      return unavailable(reply, "queue_unavailable", `the batch reached ${replication.acknowledged} of the ${replication.required} Redis replicas required`);
    }
    if (replication.required < settings.queueReplicaAcks) {
      metrics.unreplicatedAccepts.inc();
      request.log.warn({ ...replication, wanted: settings.queueReplicaAcks }, "batch accepted with fewer Redis replicas in sync than QUEUE_REPLICA_ACKS");
    }
    for (const answer of answers) metrics.eventsRejected.inc({ reason: answer.reason });
    if (overruled > 0) metrics.billingAccountOverruled.inc(overruled);
    request.log.info({ accepted: events.length, rejected: answers.length, overruled }, "callback queued");
    if (answers.length === 0) return reply.code(202).send({ accepted: events.length, rejected: [] });
    return reply.code(207).send({
      accepted: events.length,
      rejected: answers.slice(0, REJECTIONS_LISTED),
      rejected_count: answers.length,
    });
  });
}

/** Bytes of request bodies admitted at once, across requests. */
function bodyBudget(limit: number) {
  let used = 0;
  return {
    reserve(bytes: number): boolean {
      if (used + bytes > limit) return false;
      used += bytes;
      return true;
    },
    release(bytes: number): void {
      used -= bytes;
    },
  };
}

export const CALLER_GONE = Symbol("the caller closed its connection while its body was read");

export type ReadItems =
  | BodyRefusal
  | { ok: true; events: UsageEvent[]; rejected: RejectedItem[]; answers: RejectedAnswer[]; overruled: number };

/**
 * Frames a callback body from its bytes, then reads its items one at a time and sorts them into
 * usage events and refusals: each parsed item is dropped as soon as it is reduced, so a body's
 * parse holds at most one item's values at once, and an item over the per-item bounds costs only
 * itself. The bytes of each item are decoded on their own; the body is never one string.
 */
export async function readCallbackItems(body: Buffer, limits: BodyLimits, options: ReadOptions, callerGone: () => boolean): Promise<ReadItems | typeof CALLER_GONE> {
  const framed = frameCallbackBody(body, limits);
  if (!framed.ok) return framed;
  const events: UsageEvent[] = [];
  const rejected: RejectedItem[] = [];
  const answers: RejectedAnswer[] = [];
  let overruled = 0;
  let unparseable = 0;
  let valuesThisTurn = 0;
  for (const [index, span] of framed.items.entries()) {
    if (valuesThisTurn >= VALUES_READ_PER_TURN) {
      await nextTurn();
      if (callerGone()) return CALLER_GONE;
      valuesThisTurn = 0;
    }
    valuesThisTurn += Math.min(span.values, VALUES_READ_PER_TURN) + 1;
    const item = readCallbackItem(body, span);
    if (item instanceof UnparseableItem) unparseable++;
    const normalised = normaliseCallbackItem(item, options);
    if (normalised.ok) {
      events.push(normalised.event);
      if (normalised.event.claimedBillingAccountId) overruled += 1;
      continue;
    }
    const refusal = { ...normalised.rejected, issues: normalised.rejected.issues.slice(0, ISSUES_LISTED) };
    rejected.push(refusal);
    answers.push({ index, id: refusal.idempotencyKey, reason: refusal.reason, issues: refusal.issues });
  }
  if (unparseable === framed.items.length) return unreadableBody();
  return { ok: true, events, rejected, answers, overruled };
}

function unavailable(reply: FastifyReply, code: ErrorCodeSentWith<503>, message: string) {
  reply.header("retry-after", RETRY_AFTER_SECONDS);
  return sendError(reply, code, message);
}
