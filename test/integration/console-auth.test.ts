import { readdirSync, readFileSync } from "node:fs";
import type { LightMyRequestResponse } from "fastify";
import { beforeAll, describe, expect, it } from "vitest";
import { buildServer } from "../../src/receiver/server.js";
import { SIGN_IN_FAILURES_ALLOWED } from "../../src/receiver/console-session.js";
import { useServiceHarness } from "../support/harness.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { ADMIN_TOKEN, INGEST_TOKEN } from "../support/test-env.js";
import { waitFor } from "../support/wait.js";

const CONSOLE_TOKEN = "test-console-token-0001";
const QUEUE_UI_TOKEN = "test-queue-ui-token-0001";

// Its own prefix, so that the sessions and sign-in counters the tests leave are deleted after the file.
const QUEUE_PREFIX = useQueuePrefix();
const h = useServiceHarness({ CONSOLE_TOKEN, QUEUE_UI_TOKEN, QUEUE_PREFIX }, { worker: false });

const form = (token: string) => `token=${encodeURIComponent(token)}`;

async function signIn(token: string, remoteAddress = "10.0.0.1", headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return h.app.inject({
    method: "POST",
    url: "/console/sign-in",
    remoteAddress,
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    payload: form(token),
  });
}

function sessionCookieOf(response: LightMyRequestResponse): string {
  const header = String(response.headers["set-cookie"]);
  return header.split(";")[0]!;
}

const get = (url: string, headers: Record<string, string> = {}) => h.app.inject({ method: "GET", url, headers });

describe("console sign-in and sessions", () => {
  // A started receiver waits for Redis before it serves (platform/process.ts); the harness does not.
  beforeAll(() => waitFor(() => h.deps.redis.status === "ready"));

  it("sends every page to the sign-in form without a session, whatever other credential is presented", async () => {
    const presented: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${ADMIN_TOKEN}` },
      { authorization: `Bearer ${INGEST_TOKEN}` },
      { authorization: `Bearer ${CONSOLE_TOKEN}` },
      { authorization: `Basic ${Buffer.from(`ops:${QUEUE_UI_TOKEN}`).toString("base64")}` },
      { cookie: "spend_ingest_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
      { cookie: `spend_ingest_console=${CONSOLE_TOKEN}` },
    ];
    for (const headers of presented) {
      for (const url of ["/console", "/console/accounts", "/console/accounts/a", "/console/receipts/k", "/console/quarantine"]) {
        const response = await get(url, headers);
        expect(response.statusCode, `${url} ${JSON.stringify(headers)} ${response.body}`).toBe(303);
        expect(response.headers.location).toBe("/console/sign-in");
      }
    }
    // The form itself is served, and nothing in it or its URL carries a token.
    const signInPage = await get("/console/sign-in");
    expect(signInPage.statusCode).toBe(200);
    expect(signInPage.body).toContain('method="post" action="/console/sign-in"');
  });

  it("is signed into with CONSOLE_TOKEN alone, and gives a cookie scripts and other sites cannot use", async () => {
    for (const wrong of [ADMIN_TOKEN, INGEST_TOKEN, QUEUE_UI_TOKEN, `${CONSOLE_TOKEN}x`, ""]) {
      const refused = await signIn(wrong, "10.0.0.2");
      expect(refused.statusCode).toBe(401);
      expect(refused.headers["set-cookie"]).toBeUndefined();
    }
    const accepted = await signIn(CONSOLE_TOKEN, "10.0.0.3");
    expect(accepted.statusCode).toBe(303);
    expect(accepted.headers.location).toBe("/console");
    const cookie = String(accepted.headers["set-cookie"]);
    expect(cookie).toMatch(/^spend_ingest_console=[A-Za-z0-9_-]{43}; Path=\/console; Max-Age=28800; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(CONSOLE_TOKEN);
    // Only the session id's hash is in Redis: the cookie's value is no key there.
    const sessionId = sessionCookieOf(accepted).split("=")[1]!;
    expect(await h.deps.redis.exists(`${QUEUE_PREFIX}:console:session:${sessionId}`)).toBe(0);
    const opened = await get("/console", { cookie: sessionCookieOf(accepted) });
    expect(opened.statusCode).toBe(200);
    expect(opened.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(opened.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    expect(opened.headers["content-security-policy"]).not.toContain("unsafe-inline");
    expect(opened.headers["cache-control"]).toBe("no-store");
    expect(opened.headers["x-content-type-options"]).toBe("nosniff");
  });

  it("marks the cookie Secure when the request came over TLS (a proxy that says so)", async () => {
    const accepted = await signIn(CONSOLE_TOKEN, "10.0.0.4", { "x-forwarded-proto": "https" });
    expect(String(accepted.headers["set-cookie"])).toMatch(/; Secure$/);
  });

  it("a session opens no API route, and CONSOLE_TOKEN is no API token", async () => {
    const cookie = sessionCookieOf(await signIn(CONSOLE_TOKEN, "10.0.0.5"));
    expect((await get("/v1/accounts/a/credits/summary", { cookie })).statusCode).toBe(401);
    expect((await get("/v1/accounts/a/credits/summary", { authorization: `Bearer ${CONSOLE_TOKEN}` })).statusCode).toBe(401);
    expect((await get("/admin/queues", { cookie })).statusCode).toBe(401);
    const callback = await h.app.inject({ method: "POST", url: "/v1/callbacks/litellm", headers: { cookie, authorization: `Bearer ${CONSOLE_TOKEN}` }, payload: [] });
    expect(callback.statusCode).toBe(401);
  });

  it("signing out ends the session for every copy of its cookie", async () => {
    const cookie = sessionCookieOf(await signIn(CONSOLE_TOKEN, "10.0.0.6"));
    const stolen = cookie;
    expect((await get("/console/quarantine", { cookie: stolen })).statusCode).toBe(200);
    const signOut = await h.app.inject({ method: "POST", url: "/console/sign-out", headers: { cookie } });
    expect(signOut.statusCode).toBe(303);
    expect(String(signOut.headers["set-cookie"])).toContain("Max-Age=0");
    const replayed = await get("/console/quarantine", { cookie: stolen });
    expect(replayed.statusCode).toBe(303);
    expect(replayed.headers.location).toBe("/console/sign-in");
  });

  it("refuses an address after its failed sign-ins, even with the right token, and only that address", async () => {
    for (let attempt = 0; attempt < SIGN_IN_FAILURES_ALLOWED; attempt += 1) expect((await signIn("not-the-console-token", "10.0.9.9")).statusCode).toBe(401);
    expect((await signIn(CONSOLE_TOKEN, "10.0.9.9")).statusCode).toBe(429);
    expect((await signIn(CONSOLE_TOKEN, "10.0.9.10")).statusCode).toBe(303);
    const failures = h.logs.filter((line) => line.msg === "console sign-in failed");
    expect(failures.length).toBeGreaterThanOrEqual(SIGN_IN_FAILURES_ALLOWED);
    expect(JSON.stringify(h.logs)).not.toContain("not-the-console-token");
  });

  it("refuses forms posted from another site", async () => {
    const response = await signIn(CONSOLE_TOKEN, "10.0.0.7", { origin: "https://evil.example" });
    expect(response.statusCode).toBe(403);
    expect(response.body).toContain("a form from another site");
    expect(response.headers["set-cookie"]).toBeUndefined();
  });

  it("closes every session when CONSOLE_TOKEN changes, and is not served at all without one", async () => {
    const cookie = sessionCookieOf(await signIn(CONSOLE_TOKEN, "10.0.0.8"));
    const rotated = await buildServer({ ...h.deps, settings: { ...h.deps.settings, consoleToken: "test-console-token-0002" } });
    const unset = await buildServer({ ...h.deps, settings: { ...h.deps.settings, consoleToken: undefined } });
    try {
      expect((await rotated.inject({ method: "GET", url: "/console", headers: { cookie } })).statusCode).toBe(303);
      for (const url of ["/console", "/console/sign-in", "/console/static/console.js"]) {
        expect((await unset.inject({ method: "GET", url, headers: { cookie } })).statusCode).toBe(404);
      }
    } finally {
      await rotated.close();
      await unset.close();
    }
  });

  it("serves its scripts and styles from the package, and no other file", async () => {
    const uplot = await get("/console/static/uPlot.iife.min.js");
    expect(uplot.statusCode).toBe(200);
    expect(uplot.headers["content-type"]).toContain("text/javascript");
    expect(uplot.body).toContain("uPlot");
    expect((await get("/console/static/console.css")).statusCode).toBe(200);
    expect((await get("/console/static/..%2F..%2Fpackage.json")).statusCode).toBe(404);
    expect((await get("/console/static/package.json")).statusCode).toBe(404);
  });

  it("no template writes raw output but the layout's page body, which is itself escaped", () => {
    const views = new URL("../../console/views/", import.meta.url);
    const raw = readdirSync(views).flatMap((file) =>
      [...readFileSync(new URL(file, views), "utf8").matchAll(/<%~\s*([^%]*?)\s*%>/g)].map((match) => `${file}: ${match[1]}`),
    );
    expect(raw).toEqual(["layout.eta: it.body"]);
  });
});
