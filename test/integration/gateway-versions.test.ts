import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { TIER_ASSUMED_REASON } from "../../src/books/charge-receipts.js";
import { RETENTION_WARNING_SHARE, recordWatermarkLag, runGatewayBackfill } from "../../src/gateway/backfill.js";
import { reconcileGateway } from "../../src/gateway/reconcile-spend-log.js";
import { createSpendLogPool } from "../../src/litellm/spend-log.js";
import { normaliseCallbackItem } from "../../src/litellm/normalise.js";
import { enqueueCallbackItems } from "../../src/platform/queue-producer.js";
import { loadPriceBook } from "../../src/pricing/price-book.js";
import { priceUsageEvent } from "../../src/pricing/price-usage-event.js";
import { useServiceHarness } from "../support/harness.js";
import { type LitellmDatabase, spendLogRowOf, useLitellmDatabase } from "../support/litellm-spend-log.js";
import { TEST_REDIS_URL } from "../support/test-env.js";

// LiteLLM's database at the two ends of what the docs claim: its first migration, and the newest.
const versions = { baseline: useLitellmDatabase("baseline"), newest: useLitellmDatabase("newest") };
const h = useServiceHarness();

const HOUR = 3_600_000;
const captured = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/litellm/captured/${name}.json`, import.meta.url), "utf8")) as Record<string, unknown>;
const STANDARD = captured("gpt-4o-plain-float-noise");
const PRIORITY = captured("gpt-4o-service-tier-priority");

function call(kind: Record<string, unknown>, id: string, time: Date, metadata: Record<string, unknown>): Record<string, unknown> {
  return { ...kind, id, metadata: { ...(kind.metadata as object), ...metadata }, startTime: time.getTime() / 1000, endTime: time.getTime() / 1000 + 0.5 };
}

async function ops(litellm: LitellmDatabase, env: Record<string, string>, ...args: string[]) {
  const run = promisify(execFile)(process.execPath, ["dist/bin/ops.js", ...args], {
    env: { PATH: process.env.PATH, DATABASE_URL: h.settings.databaseUrl, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: h.settings.queuePrefix, LITELLM_DATABASE_URL: litellm.url, ...env },
  });
  return run.then(({ stdout }) => ({ code: 0, stdout }), (error: { code: number; stdout: string }) => ({ code: error.code, stdout: error.stdout }));
}

async function receipt(key: string) {
  const { rows } = await h.deps.database.pool.query<{ billing_account_id: string; charged_credits: string; pricing_reason: string | null }>(
    "SELECT billing_account_id, charged_credits, pricing_reason FROM charge_receipts WHERE idempotency_key = $1",
    [key],
  );
  return rows[0];
}

/** What the call's own callback would have been charged. */
function callbackCredits(payload: Record<string, unknown>): number {
  const normalised = normaliseCallbackItem(payload, { billingAccountFrom: ["team", "org"] });
  if (!normalised.ok) throw new Error("refused");
  const pricing = priceUsageEvent(normalised.event, loadPriceBook(h.settings.pricingFile));
  if (!pricing.priced) throw new Error("unpriced");
  return Number(pricing.charge.chargedCredits);
}

async function tierAssumedCount(): Promise<number> {
  const metrics = (await h.app.inject({ method: "GET", url: "/metrics" })).body;
  return Number(/^spend_ingest_charges_tier_assumed_total (\d+)$/m.exec(metrics)?.[1] ?? 0);
}

describe.each(Object.entries(versions).map(([version, litellm], index) => ({ version, litellm, index })))(
  "ops gateway reconcile on LiteLLM's $version database",
  ({ version, litellm, index }) => {
    it("reports and bills what is missing: failures skipped, the organisation and the tier read where this version keeps them", async () => {
      const now = new Date(Date.now() + (30 + 4 * index) * HOUR);
      const at = (minutes: number) => new Date(now.getTime() - minutes * 60_000);
      const id = (name: string) => `v-${version}-${name}`;
      const org = { user_api_key_team_id: null, user_api_key_org_id: `org-${version}` };
      const team = { user_api_key_team_id: `team-${version}` };
      const standard = call(STANDARD, id("standard"), at(50), team);
      const byOrg = call(STANDARD, id("by-org"), at(49), org);
      const failed = { ...call(STANDARD, id("failed"), at(48), team), status: "failure" };
      // A priority call whose request LiteLLM did not keep (store_prompts_in_spend_logs off), but
      // whose usage says its tier; and one that says it nowhere.
      const priority = call(PRIORITY, id("priority-in-usage"), at(47), team);
      const unknown = call(PRIORITY, id("priority-unknown"), at(46), team);
      const rowOf = (payload: Record<string, unknown>) => spendLogRowOf(payload, new Date(Number(payload.startTime) * 1000));
      const usage = (payload: Record<string, unknown>) => (payload.metadata as { usage_object: object }).usage_object;
      await litellm.insert([
        rowOf(standard),
        { ...rowOf(byOrg), organization_id: `org-${version}` },
        rowOf(failed),
        { ...rowOf(priority), proxy_server_request: {}, metadata: { ...rowOf(priority).metadata, usage_object: { ...usage(priority), service_tier: "priority" } } },
        { ...rowOf(unknown), proxy_server_request: {} },
      ]);
      const env = { BILLING_ACCOUNT_FROM: "team,org" };
      const window = ["--since", at(60).toISOString(), "--until", now.toISOString(), "--json"];

      const report = await ops(litellm, env, "gateway", "reconcile", ...window);
      expect(report.code).toBe(1);
      expect(JSON.parse(report.stdout).total).toMatchObject({ litellm_calls: 4, missing: 4, skipped: 1, billed: 0 });
      const assumedBefore = await tierAssumedCount();
      expect((await ops(litellm, env, "gateway", "reconcile", ...window, "--apply")).code).toBe(1);
      await h.drainQueue();

      // The baseline's LiteLLM kept no request at all: what it says of no call's tier is known.
      const requestKept = version === "newest";
      expect(await receipt(id("standard"))).toMatchObject({ billing_account_id: `team-${version}`, pricing_reason: requestKept ? null : TIER_ASSUMED_REASON });
      expect(Number((await receipt(id("standard")))!.charged_credits)).toBe(callbackCredits(standard));
      expect(await receipt(id("by-org"))).toMatchObject({ billing_account_id: `org-${version}` });
      expect(await receipt(id("failed"))).toBeUndefined();
      // Priced at the priority rate, as its callback (which carries the request's tier) would have been.
      expect(Number((await receipt(id("priority-in-usage")))!.charged_credits)).toBe(callbackCredits(priority));
      // Priced at the standard rate, and the receipt and the count say so.
      const standardPrice = callbackCredits({ ...unknown, model_parameters: {} });
      expect(standardPrice).toBeLessThan(callbackCredits(unknown));
      expect(await receipt(id("priority-unknown"))).toMatchObject({ pricing_reason: TIER_ASSUMED_REASON, charged_credits: String(standardPrice) });
      expect((await tierAssumedCount()) - assumedBefore).toBe(requestKept ? 1 : 3);

      const again = await ops(litellm, env, "gateway", "reconcile", ...window);
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ total: { billed: 4, missing: 0 }, receipts_without_litellm_row: 0 });
    });
  },
);

describe("a call's key is looked up where the version keeps it: live, deleted, rotated", () => {
  async function billKeyedCalls(litellm: LitellmDatabase, prefix: string, keys: string[], now: Date) {
    const at = (minutes: number) => new Date(now.getTime() - minutes * 60_000);
    await litellm.insert(
      keys.map((key, index) => ({ ...spendLogRowOf(call(STANDARD, `${prefix}${key}`, at(30 - index), {}), at(30 - index)), api_key: `hash-${prefix}${key}` })),
    );
    const spendLog = createSpendLogPool(litellm.url);
    try {
      await reconcileGateway({
        spendLog,
        pool: h.deps.database.pool,
        priceBook: loadPriceBook(h.settings.pricingFile),
        billingAccountFrom: ["key_metadata", "team"],
        since: at(60),
        until: now,
        apply: (missing) => enqueueCallbackItems(h.deps.usageQueue, missing),
      });
    } finally {
      await spendLog.end();
    }
    await h.drainQueue();
    const { rows: charged } = await h.deps.database.pool.query<{ idempotency_key: string; billing_account_id: string }>(
      "SELECT idempotency_key, billing_account_id FROM charge_receipts WHERE idempotency_key LIKE $1 ORDER BY idempotency_key",
      [`${prefix}%`],
    );
    const { rows: held } = await h.deps.database.pool.query<{ idempotency_key: string }>(
      "SELECT idempotency_key FROM quarantine WHERE reason = 'key_metadata_unavailable' AND idempotency_key LIKE $1 ORDER BY idempotency_key",
      [`${prefix}%`],
    );
    return { charged: charged.map((row) => [row.idempotency_key.slice(prefix.length), row.billing_account_id]), held: held.map((row) => row.idempotency_key.slice(prefix.length)) };
  }

  it("on the newest database: a deleted key from LiteLLM_DeletedVerificationToken, a rotated one through LiteLLM_DeprecatedVerificationToken", async () => {
    const litellm = versions.newest;
    const prefix = "keys-newest-";
    for (const key of ["live", "deleted", "rotated", "rotated-then-deleted"]) await litellm.createKey(`hash-${prefix}${key}`, { billing_account_id: `acct-${key}` });
    await litellm.deleteKey(`hash-${prefix}deleted`);
    await litellm.rotateKey(`hash-${prefix}rotated`, `hash-${prefix}rotated-new`);
    await litellm.rotateKey(`hash-${prefix}rotated-then-deleted`, `hash-${prefix}rotated-then-deleted-new`);
    await litellm.deleteKey(`hash-${prefix}rotated-then-deleted-new`);
    const result = await billKeyedCalls(litellm, prefix, ["live", "deleted", "rotated", "rotated-then-deleted", "never-known"], new Date(Date.now() + 40 * HOUR));
    expect(result).toEqual({
      charged: [
        ["deleted", "acct-deleted"],
        ["live", "acct-live"],
        ["rotated", "acct-rotated"],
        ["rotated-then-deleted", "acct-rotated-then-deleted"],
      ],
      held: ["never-known"],
    });
  });

  it("on the baseline database, which keeps no deleted keys: a deleted key's call is held for an operator", async () => {
    const litellm = versions.baseline;
    const prefix = "keys-baseline-";
    for (const key of ["live", "deleted"]) await litellm.createKey(`hash-${prefix}${key}`, { billing_account_id: `acct-${key}` });
    // LiteLLM before 20251219110931 deleted the row outright.
    await litellm.pool.query(`DELETE FROM "LiteLLM_VerificationToken" WHERE token = $1`, [`hash-${prefix}deleted`]);
    const result = await billKeyedCalls(litellm, prefix, ["live", "deleted"], new Date(Date.now() + 41 * HOUR));
    expect(result).toEqual({ charged: [["live", "acct-live"]], held: ["deleted"] });
  });
});

describe("LiteLLM's spend-log retention bounds how far behind the backfill may fall", () => {
  it("alerts once when the watermark's lag crosses half the retention, and again only after it was back under", async () => {
    const retentionMs = 7 * 24 * HOUR;
    const spendLog = createSpendLogPool(versions.newest.url);
    const deps = { pool: h.deps.database.pool, spendLog, queue: h.deps.usageQueue, logger: h.deps.logger, metrics: h.deps.metrics };
    try {
      const settings = {
        priceBook: loadPriceBook(h.settings.pricingFile),
        billingAccountFrom: h.settings.billingAccountFrom,
        intervalMs: 5 * 60_000,
        lagMs: 10 * 60_000,
        overlapMs: 60 * 60_000,
        spendLogRetentionMs: retentionMs,
      };
      await runGatewayBackfill(deps, settings);
      const { rows } = await h.deps.database.pool.query<{ watermark: Date }>("SELECT watermark FROM gateway_watermarks");
      const watermark = rows[0]!.watermark.getTime();
      const lagOf = (share: number) => new Date(watermark + retentionMs * share);
      const alerts = () => h.alerts("gateway_backfill_behind");

      // Runs keep failing (LiteLLM's database away): the lag grows past half the window once.
      await recordWatermarkLag(deps, retentionMs, lagOf(RETENTION_WARNING_SHARE * 0.9));
      expect(alerts()).toEqual([]);
      await recordWatermarkLag(deps, retentionMs, lagOf(RETENTION_WARNING_SHARE));
      await recordWatermarkLag(deps, retentionMs, lagOf(0.8));
      expect(alerts()).toEqual([
        expect.objectContaining({ lag_seconds: (retentionMs * RETENTION_WARNING_SHARE) / 1000, retention_seconds: retentionMs / 1000, watermark: rows[0]!.watermark.toISOString() }),
      ]);
      const metrics = (await h.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/^spend_ingest_gateway_spend_log_retention_seconds 604800$/m);
      expect(metrics).toMatch(/^spend_ingest_gateway_watermark_lag_seconds 483840$/m);

      // Back under (the backfill caught up), then behind again: a second crossing, a second alert.
      await recordWatermarkLag(deps, retentionMs, lagOf(0.1));
      await recordWatermarkLag(deps, retentionMs, lagOf(0.6));
      expect(alerts()).toHaveLength(2);
      // Unstated retention: the lag is measured, never alerted.
      await recordWatermarkLag(deps, retentionMs, lagOf(0.1));
      await recordWatermarkLag(deps, undefined, lagOf(2));
      expect(alerts()).toHaveLength(2);
    } finally {
      await spendLog.end();
    }
  });
});
