import type { Queue } from "bullmq";
import type pg from "pg";
import type { Logger } from "pino";
import { deliverCommittedAlerts, insertAlerts } from "../books/alert-outbox.js";
import type { BillingAccountSource } from "../platform/config.js";
import { withSessionLock, withTransaction } from "../platform/db/client.js";
import type { Metrics } from "../platform/metrics.js";
import { toDecimalString } from "../pricing/decimal.js";
import type { PriceBook } from "../pricing/price-book.js";
import { enqueueCallbackItems } from "../platform/queue-producer.js";
import { type GatewayReport, reconcileGateway } from "./reconcile-spend-log.js";

// One backfill at a time across every worker: a session-level advisory lock, which PostgreSQL
// releases by itself when the worker holding it dies.
const BACKFILL_LOCK = 0x5e1d_ba6f;
const WATERMARK = "litellm_spend_logs";

export type BackfillDeps = {
  pool: pg.Pool;
  spendLog: pg.Pool;
  queue: Queue;
  logger: Logger;
  metrics: Metrics;
};

export type BackfillSettings = {
  priceBook: PriceBook;
  billingAccountFrom: readonly BillingAccountSource[];
  intervalMs: number;
  lagMs: number;
  overlapMs: number;
  /** LiteLLM's spend-log retention (LITELLM_SPEND_LOG_RETENTION), when stated. */
  spendLogRetentionMs?: number;
};

export type BackfillRun = { ran: false } | { ran: true; report: GatewayReport };

/**
 * Checks LiteLLM's spend log from the stored watermark (less the overlap) to now less the lag
 * LiteLLM writes with, and sends every call it never billed through the normal
 * queue, priced and charged exactly once like any other. Another worker holding the lock means
 * this one skips its turn.
 */
export async function runGatewayBackfill(deps: BackfillDeps, settings: BackfillSettings, now = new Date()): Promise<BackfillRun> {
  const run = await withSessionLock(deps.pool, BACKFILL_LOCK, () => backfillWindow(deps, settings, now));
  return run.locked ? { ran: true, report: run.result } : { ran: false };
}

async function backfillWindow(deps: BackfillDeps, settings: BackfillSettings, now: Date): Promise<GatewayReport> {
  const { rows } = await deps.pool.query<{ watermark: Date }>("SELECT watermark FROM gateway_watermarks WHERE name = $1", [WATERMARK]);
  const until = new Date(now.getTime() - settings.lagMs);
  const from = rows[0]?.watermark ?? new Date(until.getTime() - settings.intervalMs);
  const since = new Date(Math.min(from.getTime(), until.getTime()) - settings.overlapMs);
  const report = await reconcileGateway({
    spendLog: deps.spendLog,
    pool: deps.pool,
    priceBook: settings.priceBook,
    billingAccountFrom: settings.billingAccountFrom,
    since,
    until,
    apply: (missing) => enqueueCallbackItems(deps.queue, missing),
    countReceiptsWithoutRow: false,
  });
  const spendUsd = toDecimalString(report.total.missingSpendUsd);
  // Recorded with the watermark it moved, so a crash before commit checks the window again.
  const alerts = await withTransaction(deps.pool, async (client) => {
    await client.query(
      // Never ahead of the database's clock: a run with a clock ahead must not hide the next hours.
      `INSERT INTO gateway_watermarks (name, watermark) VALUES ($1, LEAST($2::timestamptz, now()))
       ON CONFLICT (name) DO UPDATE SET watermark = GREATEST(gateway_watermarks.watermark, EXCLUDED.watermark), updated_at = now()`,
      [WATERMARK, until],
    );
    if (report.applied === 0) return [];
    return insertAlerts(client, [
      {
        event: "inv_gateway_unbilled",
        fields: {
          count: report.total.missing,
          credits: Number(report.total.missingCredits),
          spend_usd: spendUsd,
          unpriced: report.total.missingUnpriced,
          since: since.toISOString(),
          until: until.toISOString(),
        },
      },
    ]);
  });
  await deliverCommittedAlerts(deps.pool, deps.logger, alerts);
  deps.metrics.gatewayBackfilledCalls.inc(report.applied);
  deps.metrics.gatewayBackfilledSpendUsd.inc(Number(spendUsd));
  await recordWatermarkLag(deps, settings.spendLogRetentionMs, now);
  deps.logger.info({ since, until, ...report.total, missingCredits: report.total.missingCredits.toString(), missingSpendUsd: spendUsd }, "gateway backfill checked");
  return report;
}

/** Past this share of LiteLLM's spend-log retention, the watermark's lag is alerted. */
export const RETENTION_WARNING_SHARE = 0.5;

/**
 * How far behind now the stored watermark is; set after every run, and by the caller after a
 * failed one. With LiteLLM's retention known, alerts `gateway_backfill_behind` once when the lag
 * crosses half of it (LiteLLM deletes what the backfill has not read yet at the whole of it),
 * and again only after the lag was back under.
 */
export async function recordWatermarkLag(
  deps: Pick<BackfillDeps, "pool" | "metrics" | "logger">,
  retentionMs: number | undefined,
  now = new Date(),
): Promise<void> {
  const { rows } = await deps.pool.query<{ watermark: Date }>("SELECT watermark FROM gateway_watermarks WHERE name = $1", [WATERMARK]);
  if (!rows[0]) return;
  const lagMs = Math.max(0, now.getTime() - rows[0].watermark.getTime());
  deps.metrics.gatewayWatermarkLag.set(lagMs / 1000);
  if (retentionMs === undefined) return;
  deps.metrics.gatewaySpendLogRetention.set(retentionMs / 1000);
  const behind = lagMs >= retentionMs * RETENTION_WARNING_SHARE;
  const alerts = await withTransaction(deps.pool, async (client) => {
    // Only the run that changes the state alerts: once per crossing, whichever worker sees it first.
    const changed = await client.query(
      `UPDATE gateway_watermarks SET retention_warned_at = CASE WHEN $2::boolean THEN $3::timestamptz END
       WHERE name = $1 AND (retention_warned_at IS NULL) = $2::boolean`,
      [WATERMARK, behind, now],
    );
    if (!behind || changed.rowCount === 0) return [];
    return insertAlerts(client, [
      {
        event: "gateway_backfill_behind",
        fields: { lag_seconds: Math.round(lagMs / 1000), retention_seconds: Math.round(retentionMs / 1000), watermark: rows[0]!.watermark.toISOString() },
      },
    ]);
  });
  await deliverCommittedAlerts(deps.pool, deps.logger, alerts);
}
