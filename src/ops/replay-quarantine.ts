import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Queue } from "bullmq";
import type pg from "pg";
import { jsonbText, withSessionLock, withTransaction } from "../platform/db/client.js";
import { listQuarantined, markReplayed, newestQuarantineId, type QuarantinedRow, type ReplayOutcomes, replayOutcomes, type SentEvent } from "../books/quarantine.js";
import { EVENTS_PER_JOB } from "../platform/queue.js";
import { type UsageEvent, usageEventSchema } from "../usage/usage-event.js";
import { enqueueCallbackItems, queueWorkerCount } from "../platform/queue-producer.js";
import { firstNotKept } from "../litellm/sanitise.js";
import { standingConflicts } from "../books/reused-ids.js";
import { normaliseCallbackItem, type ReadOptions } from "../litellm/normalise.js";

/** One replay at a time: the session-level advisory lock every replay takes for its whole run. */
export const REPLAY_LOCK_KEY = 0x5e1d_7e9a;

const ROWS_PER_PAGE = 500;
const JOB_POLL_MS = 200;
// BullMQ keeps a completed job a while (removeOnComplete), then removes it: either way it is done.
const FINISHED_JOB_STATES = new Set(["completed", "unknown"]);
const REFUSALS_LISTED = 100;

/** Why replay itself did not send a row. */
export type ReplayRefusal = { id: string; idempotencyKey: string | null; reason: string; issues: unknown[] };

/**
 * Counts of what was observed: `replayed` items were sent, and each of them is in exactly one of
 * charged, alreadyCharged, refusedAgain, uncharged (see replayOutcomes) or stillPending.
 */
export type ReplayReport = ReplayOutcomes & {
  replayed: number;
  /** Sent, but their job had not completed when the wait ended (queued, retrying or failed). */
  stillPending: number;
  /** Rows replay did not send: not kept exactly, or refused by validation again. */
  refusedBeforeSending: number;
  /** The first of them, with why. */
  refusals: ReplayRefusal[];
};

/** Not run: another replay holds the lock, or no worker reads the queue it would send to. */
export type ReplayRun = { ran: false; why: "another_replay" | "no_worker" } | { ran: true; report: ReplayReport };

export type ReplayOptions = ReadOptions & {
  reason?: string;
  /** How long to wait for the jobs it queued to complete before counting; 0 counts at once. */
  waitMs: number;
  onProgress?: (progress: { replayed: number; refusedBeforeSending: number }) => void;
};

/**
 * Sends quarantined items back through the pipeline after a fix (a price book entry, an
 * account mapping, a schema correction), then waits for their jobs and reports what the books
 * show became of them. Receiver rejects are validated again as callback items, from the copy
 * quarantine kept; worker rejects go back as the usage events they were. A row whose copy is
 * not exact is refused, never guessed at, and so is a `receipt_conflict` whose call still has a
 * receipt with other usage. Each is charged at most once, because the receipts decide (see
 * placeRepeatedIds), not the replay; one replay runs at a time, so none is sent twice.
 */
export async function replayQuarantined(pool: pg.Pool, queue: Queue, options: ReplayOptions): Promise<ReplayRun> {
  const run = await withSessionLock(pool, REPLAY_LOCK_KEY, async () => {
    // Sent where no worker reads (another QUEUE_PREFIX, another Redis database), the items would
    // be marked replayed and never charged: nothing is sent, and they stay pending. What is sent
    // while a worker reads is taken by it, or, should it stop first, by the next worker started on
    // that queue: the jobs wait in Redis. Where Redis cannot say (undefined), replay sends.
    if ((await queueWorkerCount(queue)) === 0) return null;
    return replayPending(pool, queue, options);
  });
  if (!run.locked) return { ran: false, why: "another_replay" };
  return run.result === null ? { ran: false, why: "no_worker" } : { ran: true, report: run.result };
}

async function replayPending(pool: pg.Pool, queue: Queue, options: ReplayOptions): Promise<ReplayReport> {
  const runId = randomUUID();
  let refusedBeforeSending = 0;
  const refusals: ReplayRefusal[] = [];
  const sent: Array<SentEvent & { jobId: string }> = [];
  // Rows the worker writes while this run goes on (refusing again what it sent) wait for the next run.
  const throughId = await newestQuarantineId(pool);
  let afterId: string | undefined;
  for (;;) {
    const rows = await listQuarantined(pool, {
      reason: options.reason,
      afterId,
      throughId,
      limit: ROWS_PER_PAGE,
    });
    if (rows.length === 0) break;
    afterId = rows[rows.length - 1]!.id;
    const events: UsageEvent[] = [];
    const replayedIds: string[] = [];
    const readable = rows.map((row) => ({ row, replayable: replayableEvent(row, options) }));
    const standing = await standingConflictRows(pool, readable);
    for (const { row, replayable } of readable) {
      const refusal = !replayable.ok ? replayable : standing.has(row.id) ? STANDING_CONFLICT : null;
      if (refusal !== null) {
        refusedBeforeSending += 1;
        if (refusals.length < REFUSALS_LISTED) refusals.push({ id: row.id, idempotencyKey: row.idempotencyKey, reason: refusal.reason, issues: refusal.issues });
        continue;
      }
      events.push((replayable as { event: UsageEvent }).event);
      replayedIds.push(row.id);
    }
    if (events.length > 0) {
      // Marked inside a transaction that stays open until the jobs are queued: a worker that
      // refuses an event again waits on the row's lock and then opens the row again, and a
      // crash before commit leaves the rows pending (a second replay charges nothing twice).
      const { sentAt, jobIds } = await withTransaction(pool, async (client) => ({
        sentAt: await markReplayed(client, replayedIds),
        jobIds: await enqueueCallbackItems(queue, { events, rejected: [] }, { runId }),
      }));
      events.forEach((event, index) =>
        sent.push({ idempotencyKey: event.idempotencyKey, eventTime: event.eventTime, eventJson: jsonbText(event), sentAt, jobId: jobIds[Math.floor(index / EVENTS_PER_JOB)]! }),
      );
    }
    options.onProgress?.({ replayed: sent.length, refusedBeforeSending });
  }
  const unfinished = await unfinishedJobs(queue, [...new Set(sent.map((event) => event.jobId))], options.waitMs);
  const outcomes = await replayOutcomes(pool, sent.filter((event) => !unfinished.has(event.jobId)));
  const stillPending = sent.filter((event) => unfinished.has(event.jobId)).length;
  return { replayed: sent.length, ...outcomes, stillPending, refusedBeforeSending, refusals };
}

// The same call (its request id and time) was charged for other usage: sending it again could
// only be refused again, and alert again. It stays pending for an operator to look at.
const STANDING_CONFLICT: { reason: string; issues: unknown[] } = {
  reason: "receipt_conflict",
  issues: [{ message: "the same call (request id and time) is charged with other usage; the first receipt stands" }],
};

/**
 * The `receipt_conflict` rows whose call is charged with other usage. Rows kept under the rule
 * before request ids reused by another call were charged are sent: each of those calls is
 * charged once under a key of its own (or found charged already).
 */
async function standingConflictRows(pool: pg.Pool, rows: Array<{ row: QuarantinedRow; replayable: ReplayableEvent }>): Promise<Set<string>> {
  const conflicts = rows.flatMap(({ row, replayable }) => (row.reason === "receipt_conflict" && replayable.ok ? [{ id: row.id, event: replayable.event }] : []));
  if (conflicts.length === 0) return new Set();
  const standing = await standingConflicts(pool, conflicts.map(({ event }) => event));
  return new Set(conflicts.filter((_, index) => standing[index]).map(({ id }) => id));
}

export type ReplayableEvent = { ok: true; event: UsageEvent } | { ok: false; reason: string; issues: unknown[] };

/**
 * The event a quarantined row sends back, or why replay refuses to send it. A worker row holds
 * an event the worker read, which jsonb keeps exactly; one it could not read (`invalid_job_event`)
 * may have held NUL or a lone surrogate that storing rewrote, and is checked like a receiver copy.
 */
export function replayableEvent(row: Pick<QuarantinedRow, "stage" | "reason" | "item">, options: ReadOptions): ReplayableEvent {
  if (row.stage === "worker") {
    const parsed = usageEventSchema.safeParse(row.item);
    if (!parsed.success) {
      return { ok: false, reason: "invalid_job_event", issues: parsed.error.issues.map((issue) => ({ path: issue.path.join("."), message: issue.message })) };
    }
    const refusal = row.reason === "invalid_job_event" ? notKeptRefusal(parsed.data) : null;
    return refusal ?? { ok: true, event: parsed.data };
  }
  const refusal = notKeptRefusal(row.item);
  if (refusal !== null) return refusal;
  const normalised = normaliseCallbackItem(row.item, options);
  return normalised.ok ? normalised : { ok: false, reason: normalised.rejected.reason, issues: normalised.rejected.issues };
}

function notKeptRefusal(item: unknown): ReplayableEvent | null {
  const lost = firstNotKept(item);
  return lost === null ? null : { ok: false, reason: "not_kept", issues: [{ path: lost.path, message: `not kept exactly: ${lost.why}` }] };
}

/** The jobs of `jobIds` that have not completed by the end of the wait. */
async function unfinishedJobs(queue: Queue, jobIds: string[], waitMs: number): Promise<Set<string>> {
  const deadline = Date.now() + waitMs;
  let pending = jobIds;
  for (;;) {
    const states = await Promise.all(pending.map((id) => queue.getJobState(id)));
    pending = pending.filter((_, index) => !FINISHED_JOB_STATES.has(states[index]!));
    if (pending.length === 0 || Date.now() >= deadline) return new Set(pending);
    await sleep(JOB_POLL_MS);
  }
}
