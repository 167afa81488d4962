import { readFileSync } from "node:fs";
import view from "@fastify/view";
import { Eta } from "eta";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { balanceStatus, computeInvoice, findReceipt, listLedgerEntries, listLiveBuckets } from "../books/account-reads.js";
import {
  accountsBelow,
  type AccountSort,
  backfillLag,
  enforcementSummary,
  eventsPerMinute,
  findAccountHeader,
  listAccounts,
  pendingQuarantineByReason,
  QUARANTINE_COUNT_CAP,
  receiptChainPlace,
  receiptKeys,
  recentDivergences,
  utcDayStart,
} from "../books/console-reads.js";
import { countPendingActions, listEnforcement } from "../books/enforcement.js";
import { listQuarantined } from "../books/quarantine.js";
import { QUARANTINE_REASON_CATALOG } from "../books/quarantine-reasons.js";
import { drizzleOver, isDatabaseUnavailable } from "../platform/db/client.js";
import type { ReceiverDeps } from "../platform/deps.js";
import { projectPath } from "../platform/project-path.js";
import { sameSecret } from "./auth.js";
import { createPriceBookReader, explainReceipt } from "./console-receipt.js";
import { createConsoleSessions, SESSION_SECONDS } from "./console-session.js";
import { accountChargedPerDayByModel, accountTopPayers, chargedPerDay } from "./console-usage.js";
import { consoleFormat, stackedByModel } from "./console-view-data.js";

export const CONSOLE_PATH = "/console";
const SESSION_COOKIE = "spend_ingest_console";
const PAGE_SIZE = 50;
const DAY_MS = 86_400_000;

/**
 * Served as they are, from the package: no CDN, nothing built. uPlot draws the charts; console.js
 * reads each chart's data from its element's data-chart attribute (no inline script anywhere).
 */
const STATIC_FILES: Record<string, { path: string; type: string }> = {
  "uPlot.iife.min.js": { path: projectPath("node_modules", "uplot", "dist", "uPlot.iife.min.js"), type: "text/javascript; charset=utf-8" },
  "uPlot.min.css": { path: projectPath("node_modules", "uplot", "dist", "uPlot.min.css"), type: "text/css; charset=utf-8" },
  "console.js": { path: projectPath("console", "static", "console.js"), type: "text/javascript; charset=utf-8" },
  "console.css": { path: projectPath("console", "static", "console.css"), type: "text/css; charset=utf-8" },
};

// Scripts and styles only from the console itself; no frames, plugins, or forms posting elsewhere.
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

const SECURITY_HEADERS = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  // Not no-referrer: under it Chromium sends `Origin: null` with the console's own forms, which the origin check refuses.
  "referrer-policy": "same-origin",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
};

/**
 * The billing console: read-only pages over the books, behind CONSOLE_TOKEN. One signs in
 * through a form and holds a session cookie (console-session.ts); no other token opens it, and
 * its session opens nothing but these pages.
 */
export async function consoleRoutes(app: FastifyInstance, deps: ReceiverDeps): Promise<void> {
  const token = deps.settings.consoleToken;
  // Without a token of its own the console is not served at all: 404, as for any unknown path.
  if (token === undefined) return;
  const sessions = createConsoleSessions(deps.redis, deps.settings.queuePrefix, token);
  const staticFiles = new Map(Object.entries(STATIC_FILES).map(([name, file]) => [name, { body: readFileSync(file.path), type: file.type }]));
  const priceBook = createPriceBookReader(deps.settings.pricingFile);
  const { pool } = deps.database;
  const db = drizzleOver(pool);

  await app.register(view, {
    // Auto-escaping on: an account id or model name is text, whatever it holds. Templates never write raw output.
    engine: { eta: new Eta({ autoEscape: true, cache: true }) },
    root: projectPath("console", "views"),
    production: true,
    defaultContext: { fmt: consoleFormat },
  });

  // The sign-in form, and nothing else, is posted here: a small body, read as the form it is.
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: 4096 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  // Pages answer in HTML, errors too; the cause goes to the log, never to the page.
  app.setErrorHandler(async (error, request, reply) => {
    const unavailable = isDatabaseUnavailable(error);
    request.log[unavailable ? "warn" : "error"]({ err: error }, "console page failed");
    return page(reply.code(unavailable ? 503 : 500), "message", {
      title: unavailable ? "Unavailable" : "Error",
      message: unavailable ? "the database does not answer; try again shortly" : "this page failed; the receiver's log says why",
    });
  });

  app.addHook("onSend", async (request, reply, payload) => {
    reply.headers(SECURITY_HEADERS);
    if (!request.url.startsWith(`${CONSOLE_PATH}/static/`)) reply.header("cache-control", "no-store");
    return payload;
  });

  app.addHook("onRequest", async (request, reply) => {
    if (request.method === "POST" && !sameOrigin(request)) return page(reply.code(403), "message", { title: "Refused", message: "a form from another site" });
    const path = request.routeOptions.url ?? "";
    if (path === `${CONSOLE_PATH}/sign-in` || path === `${CONSOLE_PATH}/static/:file`) return;
    let open: boolean;
    try {
      open = await sessions.isOpen(sessionIdOf(request));
    } catch (error) {
      request.log.warn({ err: error }, "console sessions unavailable");
      return page(reply.code(503), "message", { title: "Unavailable", message: "sessions are kept in Redis, which does not answer; try again shortly" });
    }
    if (open) return;
    if (request.method === "GET") return reply.redirect(`${CONSOLE_PATH}/sign-in`, 303);
    return page(reply.code(401), "message", { title: "Signed out", message: "sign in again" });
  });

  app.get(`${CONSOLE_PATH}/static/:file`, async (request, reply) => {
    const file = staticFiles.get((request.params as { file: string }).file);
    if (file === undefined) return page(reply.code(404), "message", { title: "Not found", message: "no such file" });
    return reply.header("content-type", file.type).header("cache-control", "public, max-age=3600").send(file.body);
  });

  app.get(`${CONSOLE_PATH}/sign-in`, async (_request, reply) => page(reply, "sign-in", { failed: false }));

  app.post(`${CONSOLE_PATH}/sign-in`, async (request, reply) => {
    if (await sessions.signInRefused(request.ip)) {
      request.log.warn({ ip: request.ip }, "console sign-in refused: too many failures");
      return page(reply.code(429), "sign-in", { failed: "too many failed sign-ins from this address: try again later" });
    }
    const presented = (request.body as Record<string, string> | undefined)?.token;
    if (typeof presented !== "string" || !sameSecret(presented, token)) {
      await sessions.failedSignIn(request.ip);
      request.log.warn({ ip: request.ip }, "console sign-in failed");
      return page(reply.code(401), "sign-in", { failed: "that is not the console's token" });
    }
    const sessionId = await sessions.open();
    request.log.info({ ip: request.ip }, "console signed in");
    return reply.header("set-cookie", sessionCookie(request, sessionId, SESSION_SECONDS)).redirect(CONSOLE_PATH, 303);
  });

  app.post(`${CONSOLE_PATH}/sign-out`, async (request, reply) => {
    await sessions.close(sessionIdOf(request));
    return reply.header("set-cookie", sessionCookie(request, "", 0)).redirect(`${CONSOLE_PATH}/sign-in`, 303);
  });

  app.get(CONSOLE_PATH, async (_request, reply) => {
    const now = new Date();
    const today = utcDayStart(now);
    const line = deps.settings.lowBalanceThresholds[0] ?? 0n;
    const [minutes, days, below, quarantined, divergences, enforcement, pendingActions, lag] = await Promise.all([
      eventsPerMinute(pool, new Date(now.getTime() - DAY_MS), now),
      chargedPerDay(db, new Date(today.getTime() - 29 * DAY_MS), new Date(today.getTime() + DAY_MS)),
      accountsBelow(pool, line, 20),
      pendingQuarantineByReason(pool, Object.keys(QUARANTINE_REASON_CATALOG)),
      recentDivergences(pool, today, 10),
      enforcementSummary(pool, today, 10),
      countPendingActions(pool),
      backfillLag(pool),
    ]);
    return page(reply, "overview", {
      title: "Overview",
      eventsChart: { kind: "line", x: minutes.map((row) => row.minute.getTime() / 1000), series: [{ label: "calls per minute", values: minutes.map((row) => row.events) }] },
      creditsChart: { kind: "bars", x: days.map((row) => row.day.getTime() / 1000), series: [{ label: "credits charged", values: days.map((row) => Number(row.credits)) }] },
      below: below.map((row) => ({ ...row, status: balanceStatus(row.balance, deps.settings.lowBalanceThresholds) })),
      line,
      quarantined,
      quarantineCap: QUARANTINE_COUNT_CAP,
      divergences,
      enforcement,
      pendingActions,
      lag,
    });
  });

  app.get(`${CONSOLE_PATH}/accounts`, async (request, reply) => {
    const query = request.query as Record<string, string | undefined>;
    const sort: AccountSort = query.sort === "balance" || query.sort === "last_used" ? query.sort : "id";
    const search = (query.q ?? "").slice(0, 512);
    const after = query.after_id !== undefined && query.after_key !== undefined ? { id: query.after_id, key: query.after_key } : undefined;
    if (sort === "balance" && after !== undefined && !/^-?\d{1,19}$/.test(after.key)) return badRequest(reply, "after_key: a balance");
    if (sort === "last_used" && after !== undefined && Number.isNaN(Date.parse(after.key))) return badRequest(reply, "after_key: a time");
    const { rows, next } = await listAccounts(pool, { sort, search, after, limit: PAGE_SIZE });
    return page(reply, "accounts", {
      title: "Accounts",
      sort,
      search,
      rows: rows.map((row) => ({ ...row, status: balanceStatus(row.balance, deps.settings.lowBalanceThresholds) })),
      next: next && `?${new URLSearchParams({ sort, q: search, after_key: next.key, after_id: next.id })}`,
    });
  });

  app.get(`${CONSOLE_PATH}/accounts/:id`, async (request, reply) => {
    const { id } = request.params as { id: string };
    const query = request.query as Record<string, string | undefined>;
    const beforeId = query.before !== undefined && /^\d{1,19}$/.test(query.before) ? BigInt(query.before) : undefined;
    const account = await findAccountHeader(pool, id);
    if (account === null) return page(reply.code(404), "message", { title: "No such account", message: id });
    const now = new Date();
    const today = utcDayStart(now);
    const from = new Date(today.getTime() - 29 * DAY_MS);
    const to = new Date(today.getTime() + DAY_MS);
    const months = [0, 1, 2].map((back) => {
      const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - back, 1));
      return month.toISOString().slice(0, 7);
    });
    const [buckets, perDay, keys, teams, ledger, invoices, enforcement] = await Promise.all([
      listLiveBuckets(db, id, 20),
      accountChargedPerDayByModel(db, id, from, to),
      accountTopPayers(db, id, "key", from, to, 10),
      accountTopPayers(db, id, "team", from, to, 10),
      listLedgerEntries(db, id, { limit: PAGE_SIZE, beforeId }),
      Promise.all(months.map((period) => computeInvoice(db, id, period))),
      listEnforcement(pool, id),
    ]);
    const keysByReceipt = await receiptKeys(pool, ledger.entries.flatMap((entry) => (entry.receiptId === null ? [] : [entry.receiptId])));
    const chronological = [...ledger.entries].reverse();
    return page(reply, "account", {
      title: `Account ${id}`,
      account,
      status: balanceStatus(account.balance, deps.settings.lowBalanceThresholds),
      buckets,
      spendChart: stackedByModel(perDay, from, 30),
      balanceChart: {
        kind: "line",
        negative: account.balance < 0n,
        x: chronological.map((entry) => entry.createdAt.getTime() / 1000),
        series: [{ label: "balance after entry", values: chronological.map((entry) => Number(entry.balanceAfter)) }],
      },
      keys,
      teams,
      ledger: ledger.entries.map((entry) => ({ ...entry, receiptKey: entry.receiptId === null ? null : (keysByReceipt.get(entry.receiptId.toString()) ?? null) })),
      olderLedger: ledger.nextBeforeId === null ? null : `?before=${ledger.nextBeforeId}`,
      invoices,
      enforcement: { ...enforcement, actions: enforcement.actions.slice(-10).reverse() },
    });
  });

  app.get(`${CONSOLE_PATH}/receipts/:key`, async (request, reply) => {
    const { key } = request.params as { key: string };
    const receipt = await findReceipt(db, key);
    if (receipt === null) return page(reply.code(404), "message", { title: "No such receipt", message: key });
    return page(reply, "receipt", {
      title: `Receipt ${key}`,
      receipt,
      explanation: explainReceipt(receipt, priceBook()),
      chain: await receiptChainPlace(pool, receipt.id),
    });
  });

  app.get(`${CONSOLE_PATH}/quarantine`, async (request, reply) => {
    const query = request.query as Record<string, string | undefined>;
    const reasons = Object.keys(QUARANTINE_REASON_CATALOG);
    const reason = query.reason !== undefined && reasons.includes(query.reason) ? query.reason : undefined;
    const afterId = query.after !== undefined && /^\d{1,19}$/.test(query.after) ? query.after : undefined;
    const [counts, items] = await Promise.all([
      pendingQuarantineByReason(pool, reasons),
      reason === undefined ? Promise.resolve([]) : listQuarantined(pool, { reason, afterId, limit: PAGE_SIZE + 1 }),
    ]);
    const shown = items.slice(0, PAGE_SIZE);
    return page(reply, "quarantine", {
      title: "Quarantine",
      counts: counts.map((row) => ({ ...row, ...QUARANTINE_REASON_CATALOG[row.reason as keyof typeof QUARANTINE_REASON_CATALOG] })),
      quarantineCap: QUARANTINE_COUNT_CAP,
      reason,
      reasonEntry: reason === undefined ? null : QUARANTINE_REASON_CATALOG[reason as keyof typeof QUARANTINE_REASON_CATALOG],
      items: shown,
      next: items.length > PAGE_SIZE ? `?${new URLSearchParams({ reason: reason!, after: shown[shown.length - 1]!.id })}` : null,
    });
  });
}

function page(reply: FastifyReply, template: string, data: Record<string, unknown>): FastifyReply {
  return reply.header("content-type", "text/html; charset=utf-8").view(template, { title: data.title ?? "spend-ingest", ...data });
}

function badRequest(reply: FastifyReply, message: string): FastifyReply {
  return page(reply.code(400), "message", { title: "Bad request", message });
}

function sessionIdOf(request: FastifyRequest): string | undefined {
  for (const part of (request.headers.cookie ?? "").split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === SESSION_COOKIE) return value.join("=");
  }
  return undefined;
}

/**
 * The session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
 * it, which also stops cross-site form posts), Path=/console, and Secure when the request came over
 * TLS, to this process or to a proxy before it that says so (X-Forwarded-Proto). Believing that
 * header can only add Secure: a forged one costs its sender the session, never weakens it.
 */
function sessionCookie(request: FastifyRequest, value: string, maxAgeSeconds: number): string {
  const forwarded = String(request.headers["x-forwarded-proto"] ?? "").split(",")[0]!.trim().toLowerCase();
  const secure = request.protocol === "https" || forwarded === "https";
  return `${SESSION_COOKIE}=${value}; Path=${CONSOLE_PATH}; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${secure ? "; Secure" : ""}`;
}

/** A POST from a page of this origin, or from a client that names none (a browser always does). */
function sameOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === request.headers.host;
  } catch {
    return false;
  }
}
