import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { chromium, type Browser, type BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JOB_CHARGE_USAGE } from "../../src/platform/queue.js";
import { useServiceHarness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { ADMIN_TOKEN } from "../support/test-env.js";

// Debian's chromium package (.ci/run installs it); Playwright's own browser download cannot run here.
const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = "test-results/queue-ui.png";
const QUEUE_UI_TOKEN = "test-queue-ui-token-0001";
// A label's key, which Bull Board shows when its locale file did not load (MENU.QUEUES).
const LABEL_KEY = /\b[A-Z][A-Z_]*\.[A-Z][A-Z_.-]*\b/;

/** Every URL a context's pages ask for, redirects and failures included. */
function recordRequests(context: BrowserContext): URL[] {
  const requested: URL[] = [];
  context.on("request", (request) => requested.push(new URL(request.url())));
  return requested;
}

/** What the pages asked of any host but the service: an air-gapped site has no other. */
function askedElsewhere(requested: URL[], service: string): string[] {
  return requested.filter((url) => url.origin !== new URL(service).origin).map(String);
}

// Actions on, so that "Retry all" below is let through to Bull Board.
const h = useServiceHarness({ QUEUE_UI_TOKEN, QUEUE_UI_ACTIONS: "on" });

describe("queue UI in a real browser", () => {
  let browser: Browser;
  let baseUrl: string;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (as .ci/run does)`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    baseUrl = await h.app.listen({ port: 0, host: "127.0.0.1" });
  });

  afterAll(async () => {
    await browser?.close();
  });

  it("is refused without its own credential or with ADMIN_TOKEN, and with it shows a failed job, retries it and cleans it into quarantine", async () => {
    // A job whose events this version cannot read at all fails at once, with its reason.
    const failing = await h.deps.usageQueue.add(JOB_CHARGE_USAGE, { events: "not a list" }, { jobId: "ui-failed-job" });
    await waitFor(async () => (await failing.getState()) === "failed");

    // Without credentials the browser is answered 401 and gives up on the page.
    const anonymous = await browser.newContext();
    await expect((await anonymous.newPage()).goto(`${baseUrl}/admin/queues`)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
    expect((await anonymous.request.get(`${baseUrl}/admin/queues`)).status()).toBe(401);
    await anonymous.close();

    // The account API's token does not open it.
    const admin = await browser.newContext({ httpCredentials: { username: "admin", password: ADMIN_TOKEN } });
    expect((await (await admin.newPage()).goto(`${baseUrl}/admin/queues`))?.status()).toBe(401);
    expect((await admin.request.get(`${baseUrl}/admin/queues`)).status()).toBe(401);
    await admin.close();

    const operator = await browser.newContext({ httpCredentials: { username: "ops-alice", password: QUEUE_UI_TOKEN } });
    const requested = recordRequests(operator);
    const page = await operator.newPage();
    const opened = await page.goto(`${baseUrl}/admin/queues`);
    expect(opened?.status()).toBe(200);
    await page.getByText("usage-events").first().waitFor({ timeout: 15_000 });

    await page.goto(`${baseUrl}/admin/queues/queue/usage-events?status=failed`);
    await page.getByText("ui-failed-job").first().waitFor({ timeout: 15_000 });
    await page.getByText(/data does not parse/).first().waitFor({ timeout: 15_000 });
    await mkdir("test-results", { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);

    // Retry from the UI sends the failed job back to be processed (and here fail again).
    const failedBefore = (await h.deps.usageQueue.getJob("ui-failed-job"))!.finishedOn;
    await page.getByRole("button", { name: "Retry all" }).click();
    const confirm = page.getByRole("button", { name: /^(Retry|Confirm|Yes)/ }).last();
    if (await confirm.isVisible().catch(() => false)) await confirm.click();
    await waitFor(async () => (await h.deps.usageQueue.getJob("ui-failed-job"))!.finishedOn !== failedBefore);

    // "Clean all" is answered by spend-ingest, not Bull Board: the job's data goes to quarantine first.
    await page.reload();
    await page.getByRole("button", { name: "Clean all" }).click();
    const confirmClean = page.getByRole("button", { name: /^(Clean|Confirm|Yes)/ }).last();
    if (await confirmClean.isVisible().catch(() => false)) await confirmClean.click();
    await waitFor(async () => (await h.deps.usageQueue.getJob("ui-failed-job")) === undefined);
    const { rows } = await h.deps.database.pool.query("SELECT reason, item FROM quarantine WHERE detail->>'jobId' = 'ui-failed-job'");
    expect(rows).toEqual([{ reason: "invalid_job_event", item: { events: "not a list" } }]);
    // Job pages load more of Bull Board (highlight.js, dialogs): from the service too.
    expect(askedElsewhere(requested, baseUrl)).toEqual([]);
    await operator.close();
  });

  it("shows its labels, with the credential typed or in the URL, and asks no other host for anything", async () => {
    const service = new URL(baseUrl);
    const typed = await browser.newContext({ locale: "en-US", httpCredentials: { username: "ops-alice", password: QUEUE_UI_TOKEN } });
    // As `chromium --headless --dump-dom http://user:token@host/admin/queues` opens it.
    const inUrl = await browser.newContext({ locale: "en-US" });
    const withCredentialInUrl = `${service.protocol}//ops-bob:${QUEUE_UI_TOKEN}@${service.host}/admin/queues`;
    for (const [context, url] of [[typed, `${baseUrl}/admin/queues`], [inUrl, withCredentialInUrl]] as const) {
      const requested = recordRequests(context);
      const page = await context.newPage();
      await page.goto(url);
      // The queue's job count, worded by the locale file ("0 Jobs", "1 Job") or, without it, its key.
      await page.getByText(/^(\d+ Jobs?|DASHBOARD\.JOBS_COUNT)$/).first().waitFor({ timeout: 15_000 });
      expect(await page.locator("body").innerText()).not.toMatch(LABEL_KEY);
      // No web fonts from Google; the labels from the service's own copy of Bull Board.
      expect(askedElsewhere(requested, baseUrl)).toEqual([]);
      expect(requested.some((requestedUrl) => requestedUrl.pathname.startsWith("/admin/queues/static/locales/"))).toBe(true);
      await context.close();
    }
  });
});
