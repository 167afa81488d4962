import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import type { Job, JobType } from "bullmq";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { deliverCommittedAlerts } from "../books/alert-outbox.js";
import type { ReceiverDeps } from "../platform/deps.js";
import { quarantineRemovedJobs } from "../books/quarantine.js";
import { USAGE_QUEUE } from "../platform/queue.js";
import { basicAuthUsername } from "./auth.js";
import type { ErrorCodeSentWith } from "./error-catalog.js";
import { sendError } from "./errors.js";
import { selfContainedQueueUiPage } from "./queue-ui-page.js";

export const QUEUE_UI_PATH = "/admin/queues";

// Removals read, quarantine and remove this many jobs at a time, so a backlog never loads at once.
const JOBS_PER_PAGE = 100;

type Removal = "empty" | "clean-state" | "clean-job";

/**
 * The writes the UI may make when QUEUE_UI_ACTIONS=on, by method and route pattern below
 * QUEUE_UI_PATH. Retry, promote, pause and resume lose no job, so Bull Board does them; removals
 * are done here, once what the jobs carry is in quarantine. Every other write is refused: `add`
 * and `update-data` would forge charges, and the rest (obliterate, schedulers, concurrency, rate
 * limits, delay, priority, children, metrics history) have no use on this queue.
 */
const ALLOWED_ACTIONS: ReadonlyMap<string, "bull-board" | Removal> = new Map([
  ["PUT /api/queues/:queueName/retry/:queueStatus", "bull-board"],
  ["PUT /api/queues/:queueName/:jobId/retry", "bull-board"],
  ["PUT /api/queues/:queueName/promote", "bull-board"],
  ["PUT /api/queues/:queueName/:jobId/promote", "bull-board"],
  ["PUT /api/queues/pause", "bull-board"],
  ["PUT /api/queues/resume", "bull-board"],
  ["PUT /api/queues/:queueName/pause", "bull-board"],
  ["PUT /api/queues/:queueName/resume", "bull-board"],
  ["PUT /api/queues/:queueName/empty", "empty"],
  ["PUT /api/queues/:queueName/clean/:queueStatus", "clean-state"],
  ["PUT /api/queues/:queueName/:jobId/clean", "clean-job"],
]);

// Bull Board's empty is BullMQ's drain(): the waiting and prioritized jobs, not the delayed ones.
const EMPTIED_STATES: JobType[] = ["waiting", "prioritized"];
const CLEANABLE_STATES: ReadonlySet<string> = new Set(["waiting", "prioritized", "delayed", "failed", "completed", "active"]);

type RemovalCounts = { removed: number; quarantined: number; notRemoved: Array<{ jobId: string; reason: string }> };
type Outcome = "unauthorized" | "refused" | "bull_board" | "removed" | "failed";
type ActionRecord = { who: string | null; outcome: Outcome; counts?: RemovalCounts };
type Answer = "removed" | { code: ErrorCodeSentWith<number>; message: string };

/**
 * Bull Board over the usage queue, behind its own operator credential (basic auth, any
 * username, password QUEUE_UI_TOKEN), read-only unless QUEUE_UI_ACTIONS=on. Every write is
 * logged once, with who asked, from where, and what came of it.
 */
export async function queueUiRoutes(app: FastifyInstance, deps: ReceiverDeps): Promise<void> {
  const token = deps.settings.queueUiToken;
  // Without a credential of its own the UI is not served at all: 404, as for any unknown path.
  if (token === undefined) return;
  const actions = new WeakMap<FastifyRequest, ActionRecord>();
  const performRemoval = createRemover(deps);

  app.addHook("onRequest", async (request, reply) => {
    const username = basicAuthUsername(request.headers.authorization, token);
    const reading = request.method === "GET" || request.method === "HEAD";
    const action: ActionRecord = { who: username === undefined ? null : operatorName(username, deps), outcome: "refused" };
    if (!reading) actions.set(request, action);
    if (username === undefined) {
      action.outcome = "unauthorized";
      reply.header("www-authenticate", 'Basic realm="spend-ingest queues", charset="UTF-8"');
      return refuse(reply, "unauthorized", "the queue UI needs its own credential, QUEUE_UI_TOKEN");
    }
    if (reading) return;
    // Bull Board refuses writes to a read-only queue too (405); this does not depend on it.
    if (!deps.settings.queueUiActions) {
      return refuse(reply, "queue_ui_read_only", "the queue UI is read-only (QUEUE_UI_ACTIONS=off)");
    }
    const allowed = ALLOWED_ACTIONS.get(`${request.method} ${routePattern(request).slice(QUEUE_UI_PATH.length)}`);
    if (allowed === undefined) return refuse(reply, "queue_ui_action_refused", "this action is never allowed from the queue UI");
    if (allowed === "bull-board") {
      action.outcome = "bull_board";
      return;
    }
    const counts: RemovalCounts = { removed: 0, quarantined: 0, notRemoved: [] };
    action.counts = counts;
    let answer: Answer;
    try {
      answer = await performRemoval(allowed, request.params as Record<string, string>, username, counts);
    } catch (error) {
      // Each page is quarantined before it is removed, so stopping part-way loses nothing.
      request.log.error({ err: error }, "queue ui removal failed");
      answer = { code: "queue_ui_removal_failed", message: "the removal stopped part-way; what it removed is in quarantine" };
    }
    // Recorded before the reply is sent: the response may be logged before send returns.
    action.outcome = answer === "removed" ? "removed" : answer.code === "queue_ui_removal_failed" ? "failed" : "refused";
    if (answer === "removed") return reply.code(200).send(counts);
    return refuse(reply, answer.code, answer.message, counts);
  });

  app.addHook("onResponse", async (request, reply) => {
    const action = actions.get(request);
    if (action === undefined) return;
    const fields = {
      who: action.who,
      ip: request.ip,
      method: request.method,
      route: routePattern(request),
      params: request.params,
      status: reply.statusCode,
      outcome: action.outcome,
      ...action.counts,
    };
    if (action.outcome === "bull_board") request.log.info(fields, "queue ui action");
    else request.log.warn(fields, "queue ui action");
  });

  // The page is the only HTML in this scope (static files are streams, the API is JSON).
  app.addHook("onSend", async (_request, reply, payload) => {
    const html = typeof payload === "string" && String(reply.getHeader("content-type")).startsWith("text/html");
    return html ? selfContainedQueueUiPage(payload) : payload;
  });

  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUE_UI_PATH);
  const queue = new BullMQAdapter(deps.usageQueue, { readOnlyMode: !deps.settings.queueUiActions });
  createBullBoard({ queues: [queue], serverAdapter });
  await app.register(serverAdapter.registerPlugin(), { prefix: QUEUE_UI_PATH });
}

function createRemover(deps: ReceiverDeps) {
  const { pool } = deps.database;
  const queue = deps.usageQueue;

  /**
   * Removes `jobs` once what they carry is committed to quarantine (completed jobs carry
   * nothing uncharged and go as they are). A job a worker holds is not removed and is reported;
   * its items stay in quarantine as well, where a replay finds them charged and charges nothing.
   */
  async function removeJobs(jobs: Job[], options: { keepItems: boolean; who: string }, counts: RemovalCounts) {
    if (options.keepItems) {
      const removedJobs = jobs.map((job) => ({ id: job.id!, name: job.name, data: job.data }));
      const { items, alerts } = await quarantineRemovedJobs(pool, removedJobs, options.who);
      counts.quarantined += items;
      await deliverCommittedAlerts(pool, deps.logger, alerts);
    }
    const results = await Promise.allSettled(jobs.map((job) => job.remove()));
    results.forEach((result, index) => {
      if (result.status === "fulfilled") counts.removed += 1;
      else counts.notRemoved.push({ jobId: jobs[index]!.id!, reason: (result.reason as Error).message });
    });
  }

  /** Every job in `state` when the request began, a page at a time; jobs added meanwhile may stand in for them. */
  async function removeJobsIn(state: JobType, who: string, counts: RemovalCounts) {
    const total = (await queue.getJobCounts(state))[state] ?? 0;
    const tried = new Set<string>();
    let start = 0;
    while (tried.size < total) {
      const page = await queue.getJobs([state], start, start + JOBS_PER_PAGE - 1);
      if (page.length === 0) break;
      const fresh = page.filter((job) => !tried.has(job.id!)).slice(0, total - tried.size);
      // Only jobs that could not be removed are left where the page began: look past them.
      if (fresh.length === 0) {
        start += page.length;
        continue;
      }
      for (const job of fresh) tried.add(job.id!);
      await removeJobs(fresh, { keepItems: state !== "completed", who }, counts);
    }
  }

  return async function performRemoval(removal: Removal, params: Record<string, string>, who: string, counts: RemovalCounts): Promise<Answer> {
    if (params.queueName !== USAGE_QUEUE) return { code: "queue_not_found", message: `no queue named ${params.queueName}` };
    switch (removal) {
      case "empty":
        for (const state of EMPTIED_STATES) await removeJobsIn(state, who, counts);
        return "removed";
      case "clean-state": {
        const state = params.queueStatus!;
        if (!CLEANABLE_STATES.has(state)) {
          return { code: "invalid_state", message: `jobs can be cleaned in ${[...CLEANABLE_STATES].join(", ")}` };
        }
        await removeJobsIn(state as JobType, who, counts);
        return "removed";
      }
      case "clean-job": {
        const job = await queue.getJob(params.jobId!);
        if (job === undefined) return { code: "job_not_found", message: `no job ${params.jobId}` };
        await removeJobs([job], { keepItems: (await job.getState()) !== "completed", who }, counts);
        if (counts.removed === 0) return { code: "job_active", message: "a worker holds the job; it was not removed" };
        return "removed";
      }
    }
  };
}

function routePattern(request: FastifyRequest): string {
  return request.routeOptions.url ?? request.url;
}

// Only ever called for an operator who gave the right password; one who typed a token
// as the username too must not find it in the log.
function operatorName(username: string, deps: ReceiverDeps): string {
  const { queueUiToken, adminToken, ingestTokens } = deps.settings;
  if ([queueUiToken, adminToken, ...ingestTokens].includes(username)) return "[redacted]";
  return username.slice(0, 100);
}

/** Our error shape, with `key` too: Bull Board's UI shows `error.key` (echoed when untranslated) in its toast. */
function refuse(reply: FastifyReply, code: ErrorCodeSentWith<number>, message: string, extra: object = {}): FastifyReply {
  return sendError(reply, code, message, { key: message, ...extra });
}
