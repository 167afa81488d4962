import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reconcileLedger } from "../../src/books/reconcile-ledger.js";
import { seedChargedBooks } from "../support/console-seed.js";
import { useServiceHarness } from "../support/harness.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { ADMIN_TOKEN, INGEST_TOKEN } from "../support/test-env.js";
import { waitFor } from "../support/wait.js";

// Debian's chromium package (.ci/chromium installs it); Playwright's own browser download cannot run here.
const CHROMIUM = "/usr/bin/chromium";
const CONSOLE_TOKEN = "test-console-token-0001";
const RECEIPTS = 100_000;

// Account ids and model names an attacker could have a gateway send: markup, an attribute
// break-out, right-to-left override and zero-width characters. Each must show as the text it is.
const SCRIPT_ACCOUNT = "<script>window.__pwned = 1</script>";
const IMG_ACCOUNT = '"><img src=x onerror="window.__pwned = 2">';
const RTL_ACCOUNT = "acct-\u202Egnp.exe\u202C-\u200Bzw";
const SCRIPT_MODEL = "<script>window.__pwned = 3</script>";
const IMG_MODEL = "'><img src=x onerror=alert(4)>";
const ACCOUNTS = [SCRIPT_ACCOUNT, IMG_ACCOUNT, RTL_ACCOUNT, ...Array.from({ length: 197 }, (_, index) => `acct-${String(index).padStart(3, "0")}`)];
const MODELS = ["gpt-4o-mini", "claude-sonnet-4", SCRIPT_MODEL, IMG_MODEL, "gemini-2.5-pro"];

const QUEUE_PREFIX = useQueuePrefix();
const h = useServiceHarness({ CONSOLE_TOKEN, QUEUE_PREFIX, LOW_BALANCE_THRESHOLDS: "1000" }, { worker: false });

describe("console in a real browser, over 100,000 receipts", () => {
  let browser: Browser;
  let baseUrl: string;
  const dialogs: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (as .ci/chromium does)`);
    await waitFor(() => h.deps.redis.status === "ready");
    await seedChargedBooks(h.deps.database.pool, { receipts: RECEIPTS, accounts: ACCOUNTS, models: MODELS, days: 30 });
    await h.deps.database.pool.query(
      `INSERT INTO quarantine (fingerprint, stage, reason, idempotency_key, detail, item)
       VALUES ('hostile', 'worker', 'unpriced_model', $1, $2, $3)`,
      [IMG_ACCOUNT, JSON.stringify({ message: SCRIPT_MODEL }), JSON.stringify({ model: SCRIPT_MODEL, metadata: { billing_account_id: RTL_ACCOUNT } })],
    );
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    baseUrl = await h.app.listen({ port: 0, host: "127.0.0.1" });
    await mkdir("test-results", { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
  });

  /** A context whose pages record every dialog and fail the test on any script error. */
  async function newContext(): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    context.on("page", (page) => page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    }));
    return context;
  }

  async function signIn(page: Page, token: string): Promise<void> {
    await page.goto(`${baseUrl}/console`);
    await page.locator("#token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForLoadState("load");
  }

  /** Loads a page, waits for its charts, checks no injected script ran, and keeps a 1400×900 screenshot. */
  async function open(page: Page, path: string, screenshot: string): Promise<void> {
    const response = await page.goto(`${baseUrl}${path}`);
    expect(response?.status(), path).toBe(200);
    await waitFor(async () => (await page.locator(".chart:not([data-drawn]):not(.empty)").count()) === 0);
    expect(await page.evaluate("window.__pwned")).toBeUndefined();
    expect(await page.locator("img").count()).toBe(0);
    await page.screenshot({ path: `test-results/console-${screenshot}.png` });
  }

  it("opens for CONSOLE_TOKEN alone, and every page renders the books, hostile names as text, no script of theirs run", async () => {
    const context = await newContext();
    const page = await context.newPage();

    // Without a session every page is the sign-in form; the other tokens do not open it.
    await page.goto(`${baseUrl}/console/accounts`);
    expect(new URL(page.url()).pathname).toBe("/console/sign-in");
    await page.screenshot({ path: "test-results/console-sign-in.png" });
    for (const token of [ADMIN_TOKEN, INGEST_TOKEN]) {
      await signIn(page, token);
      expect(new URL(page.url()).pathname).toBe("/console/sign-in");
      await page.getByRole("alert").getByText("not the console's token").waitFor();
    }
    await signIn(page, CONSOLE_TOKEN);
    expect(new URL(page.url()).pathname).toBe("/console");

    await open(page, "/console", "overview");
    // Every seeded account is negative: the lowest twenty are listed, each in red.
    expect(await page.locator("tr.negative .balance").count()).toBe(20);
    expect(await page.locator("main").innerText()).toContain("unpriced_model");
    expect(await page.locator(".chart canvas").count()).toBeGreaterThanOrEqual(2);

    await open(page, "/console/accounts?sort=balance", "accounts");
    expect(await page.locator("table.accounts tbody tr").count()).toBe(50);
    await page.getByRole("link", { name: "Next page" }).click();
    expect(await page.locator("table.accounts tbody tr").count()).toBe(50);
    await open(page, `/console/accounts?q=${encodeURIComponent("acct-19")}`, "accounts-search");
    expect(await page.locator("table.accounts tbody tr").count()).toBe(7);
    for (const hostile of [SCRIPT_ACCOUNT, IMG_ACCOUNT, RTL_ACCOUNT]) {
      await open(page, `/console/accounts?q=${encodeURIComponent(hostile.slice(0, 7))}`, "accounts-hostile");
      expect(await page.locator("table.accounts tbody bdi").allInnerTexts()).toEqual([hostile]);
    }

    // A negative balance is red, with its charts drawn.
    await open(page, `/console/accounts/${encodeURIComponent(SCRIPT_ACCOUNT)}`, "account-negative");
    expect(await page.locator("h1").innerText()).toBe(`Account ${SCRIPT_ACCOUNT}`);
    const balance = page.locator("p.big.negative .balance");
    expect(await balance.innerText()).toMatch(/^-\d{1,3}(,\d{3})+$/);
    // The tests compile without the DOM's types: the browser's own getComputedStyle, reached through globalThis.
    const colour = await balance.evaluate((element) => (globalThis as unknown as { getComputedStyle: (of: unknown) => { color: string } }).getComputedStyle(element).color);
    expect(colour).toBe("rgb(198, 40, 40)");
    expect(await page.locator(".chart[data-drawn] canvas").count()).toBe(2);
    const legend = await page.locator(".u-legend").allInnerTexts();
    expect(legend.join("\n")).toContain(SCRIPT_MODEL);
    expect(legend.join("\n")).toContain(IMG_MODEL);
    expect(await page.locator("table.ledger tbody tr").count()).toBe(Math.min(50, Math.ceil(RECEIPTS / ACCOUNTS.length)));

    await open(page, `/console/accounts/${encodeURIComponent(RTL_ACCOUNT)}`, "account-rtl");
    expect(await page.locator("h1 bdi").innerText()).toBe(RTL_ACCOUNT);

    // A receipt from the ledger: its terms, and its place in the chain, recomputed.
    await page.locator("table.ledger tbody tr a").first().click();
    await page.waitForLoadState("load");
    expect(new URL(page.url()).pathname).toMatch(/^\/console\/receipts\/seed-call-\d+$/);
    await open(page, new URL(page.url()).pathname, "receipt");
    expect(await page.locator("main").innerText()).toContain("matches: this receipt and entry are as they were chained");

    await open(page, "/console/quarantine?reason=unpriced_model", "quarantine");
    const quarantine = await page.locator("main").innerText();
    expect(quarantine).toContain("npm run -s ops -- quarantine replay --reason unpriced_model");
    expect(quarantine).toContain(IMG_ACCOUNT);
    expect(quarantine).toContain("window.__pwned = 3");
    // Characters that reorder or hide text are shown escaped in the item as kept.
    expect(quarantine).toContain("\\u202e");

    expect(dialogs).toEqual([]);
    await context.close();
  });

  it("a session's cookie, copied elsewhere, opens nothing once its owner signed out", async () => {
    const owner = await newContext();
    const page = await owner.newPage();
    await signIn(page, CONSOLE_TOKEN);
    const cookies = await owner.cookies();
    expect(cookies).toEqual([expect.objectContaining({ name: "spend_ingest_console", httpOnly: true, sameSite: "Strict", path: "/console" })]);

    const thief = await newContext();
    await thief.addCookies(cookies);
    const stolen = await thief.newPage();
    await stolen.goto(`${baseUrl}/console/quarantine`);
    expect(new URL(stolen.url()).pathname).toBe("/console/quarantine");

    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(`${baseUrl}/console/sign-in`);
    await stolen.goto(`${baseUrl}/console/quarantine`);
    expect(new URL(stolen.url()).pathname).toBe("/console/sign-in");
    await owner.close();
    await thief.close();
  });

  it("the seeded books tie out, so the pages above showed books the service could have written", async () => {
    const report = await reconcileLedger(h.deps.database.pool);
    expect(report.drifts).toEqual([]);
  });
});
