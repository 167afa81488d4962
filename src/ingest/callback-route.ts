import type { FastifyInstance, FastifyReply } from "fastify";
import type { Deps } from "../deps.js";
import { bearerTokenMatches } from "../http/auth.js";
import { sendError } from "../http/errors.js";
import type { RejectedItem, UsageEvent } from "../queue/contract.js";
import { enqueueCallbackItems } from "../queue/producer.js";
import { parseCallbackBody } from "./callback-body.js";
import { normaliseCallbackItem } from "./litellm-payload.js";

const CALLBACK_CONTENT_TYPES = ["application/json", "application/x-ndjson"];
// Past this the client is told to come back rather than wait: LiteLLM drops a batch on a non-2xx.
const ENQUEUE_TIMEOUT_MS = 5_000;
const RETRY_AFTER_SECONDS = "5";

type RejectedAnswer = { index: number; id: string | null; reason: string; issues: unknown[] };

/** `POST /v1/callbacks/litellm`: validates each item, queues the good ones, quarantines the rest. */
export async function callbackRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  // The body decides the log format, so the raw text is parsed here, not by Fastify's JSON parser.
  app.removeAllContentTypeParsers();
  // As one buffer, decoded once: cheaper than decoding every chunk of a multi-megabyte batch.
  app.addContentTypeParser(CALLBACK_CONTENT_TYPES, { parseAs: "buffer" }, (_request, body, done) => done(null, body));

  app.addHook("onRequest", async (request, reply) => {
    if (!bearerTokenMatches(request.headers.authorization, deps.settings.ingestTokens)) {
      return sendError(reply, 401, "unauthorized", "a valid ingest bearer token is required");
    }
  });

  app.post("/v1/callbacks/litellm", { bodyLimit: deps.settings.maxBodyBytes }, async (request, reply) => {
    const body = request.body;
    // The raw batch and its parsed items (prompts and all) are dropped here, before the first
    // await, so they die young instead of being held while Redis answers.
    request.body = undefined;
    const read = readCallbackItems(Buffer.isBuffer(body) ? body.toString("utf8") : "");
    if (!read.ok) return sendError(reply, 400, read.code, read.message);
    const { events, rejected, answers } = read;
    deps.metrics.eventsReceived.inc(events.length + rejected.length);

    const waiting = await withTimeout(deps.usageQueue.getWaitingCount(), ENQUEUE_TIMEOUT_MS).catch(() => null);
    if (waiting === null) return unavailable(reply, "the queue does not answer");
    if (waiting > deps.settings.queueHighWater) return unavailable(reply, "the queue backlog is over its high-water mark");
    try {
      await withTimeout(enqueueCallbackItems(deps.usageQueue, { events, rejected }), ENQUEUE_TIMEOUT_MS);
    } catch (error) {
      request.log.warn({ err: error }, "enqueue failed");
      // Job ids are content hashes, so whatever did reach Redis is not queued twice on the retry.
      return unavailable(reply, "the queue could not take the batch");
    }
    for (const answer of answers) deps.metrics.eventsRejected.inc({ reason: answer.reason });
    request.log.info({ accepted: events.length, rejected: answers.length }, "callback queued");
    return reply.code(answers.length === 0 ? 202 : 207).send({ accepted: events.length, rejected: answers });
  });
}

/** Parses a callback body and sorts its items into usage events and refusals. */
function readCallbackItems(
  text: string,
): { ok: false; code: string; message: string } | { ok: true; events: UsageEvent[]; rejected: RejectedItem[]; answers: RejectedAnswer[] } {
  const parsed = parseCallbackBody(text);
  if (!parsed.ok) return parsed;
  const events: UsageEvent[] = [];
  const rejected: RejectedItem[] = [];
  const answers: RejectedAnswer[] = [];
  parsed.items.forEach((item, index) => {
    const normalised = normaliseCallbackItem(item);
    if (normalised.ok) {
      events.push(normalised.event);
      return;
    }
    const { reason, idempotencyKey, issues } = normalised.rejected;
    rejected.push(normalised.rejected);
    answers.push({ index, id: idempotencyKey, reason, issues });
  });
  return { ok: true, events, rejected, answers };
}

function unavailable(reply: FastifyReply, message: string) {
  reply.header("retry-after", RETRY_AFTER_SECONDS);
  return sendError(reply, 503, "queue_unavailable", message);
}

function withTimeout<T>(promise: Promise<T>, milliseconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${milliseconds} ms`)), milliseconds);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
