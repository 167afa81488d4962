import type { Queue } from "bullmq";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { DIVERGENCE_STEPS, ON_DIVERGENCE } from "../usage/rate-fields.js";
import { CALLBACK_REFUSAL_REASONS } from "../usage/usage-event.js";
import { ENFORCEMENT_ACTIONS } from "./db/schema.js";
import { USAGE_JOB_NAMES } from "./queue.js";
import { withTimeout } from "./with-timeout.js";

// Label values that only the metrics name. The others are imported from where they are decided.
export const CHARGE_OUTCOMES = ["charged", "free", "duplicate", "conflict", "quarantined", "failed_call_skipped"] as const;
export type ChargeOutcome = (typeof CHARGE_OUTCOMES)[number];
export const REQUEST_REFUSALS = ["bytes_in_flight", "too_many_items", "not_replicated"] as const;
export const UNAUTHORIZED_REASONS = ["no_token", "unknown_token"] as const;
export const CONNECTION_CAP_ACTIONS = ["evicted", "refused"] as const;
export type ConnectionCapAction = (typeof CONNECTION_CAP_ACTIONS)[number];
const ENFORCEMENT_CALL_OUTCOMES = ["done", "failed", "not_found"] as const;

const JOB_STATES = ["waiting", "active", "delayed", "prioritized", "completed", "failed"] as const;
const QUEUE_GAUGE_TIMEOUT_MS = 1_000;

/** The same read for every collector of one scrape (they run at once), a fresh one for the next. */
function onePerScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let current: Promise<T> | null = null;
  return () => {
    if (current === null) {
      current = read();
      void current.finally(() => setTimeout(() => (current = null), 0));
    }
    return current;
  };
}

/** Every value each label can take, by label name. */
type LabelValues = Record<string, readonly string[]>;
type LabelSet<Values extends LabelValues> = { [Name in keyof Values]: Values[Name][number] };

/** Every combination of one value per label, the labels in their declared order. */
function everyLabelSet(values: LabelValues): Array<Record<string, string>> {
  return Object.entries(values).reduce<Array<Record<string, string>>>(
    (sets, [name, options]) => sets.flatMap((set) => options.map((value) => ({ ...set, [name]: value }))),
    [{}],
  );
}

/**
 * A counter with a series at 0 for every label set it can count, from its registration on:
 * Prometheus' increase() and rate() see an increment only from a series' second sample, so a
 * series born at 1 would hide its first count. The compiler holds increments to those sets.
 */
function labelledCounter<const Values extends LabelValues>(registry: Registry, config: { name: string; help: string; labels: Values }) {
  const counter = new Counter({ name: config.name, help: config.help, labelNames: Object.keys(config.labels), registers: [registry] });
  for (const labels of everyLabelSet(config.labels)) counter.inc(labels, 0);
  return counter as Omit<Counter, "inc"> & { inc(labels: LabelSet<Values>, value?: number): void };
}

/**
 * The process's own Prometheus registry: a receiver and a worker running apart each expose
 * what they did. Queue depth is read from Redis at scrape time, so any process shows it. The
 * registry is the catalog of metrics, each with its help: docs/reference/metrics.md has a row for
 * each, with its labels, checked by a test.
 */
export function createMetrics(queues: Queue[]) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "spend_ingest_" });
  const metrics = {
    registry,
    eventsReceived: new Counter({
      name: "spend_ingest_events_received_total",
      help: "Callback items received by this receiver, accepted or not",
      registers: [registry],
    }),
    eventsRejected: labelledCounter(registry, {
      name: "spend_ingest_events_rejected_total",
      help: "Callback items refused at the door and quarantined, by reason",
      labels: { reason: CALLBACK_REFUSAL_REASONS },
    }),
    billingAccountOverruled: new Counter({
      name: "spend_ingest_billing_account_overruled_total",
      help: "Callback items whose caller named another account in spend_logs_metadata than the trusted source that pays",
      registers: [registry],
    }),
    requestsRefused: labelledCounter(registry, {
      name: "spend_ingest_requests_refused_total",
      help: "Callback requests refused whole (503, 413), by reason; not_replicated: queued, but no replica acknowledged in time",
      labels: { reason: REQUEST_REFUSALS },
    }),
    requestsUnauthorized: labelledCounter(registry, {
      name: "spend_ingest_requests_unauthorized_total",
      help: "Callback requests answered 401, by reason: no_token, no Authorization: Bearer header; unknown_token, a bearer token that is none of INGEST_TOKENS",
      labels: { reason: UNAUTHORIZED_REASONS },
    }),
    connectionsClosedAtCap: labelledCounter(registry, {
      name: "spend_ingest_connections_closed_at_cap_total",
      help: "Connections closed because the server held its most (MAX_CONNECTIONS, or fewer for the file-descriptor limit): evicted, an idle one a newcomer replaced; refused, a newcomer, every connection being busy or under a second old",
      labels: { action: CONNECTION_CAP_ACTIONS },
    }),
    unreplicatedAccepts: new Counter({
      name: "spend_ingest_unreplicated_accepts_total",
      help: "Callback requests answered 2xx while the queue's Redis master had fewer replicas in sync than QUEUE_REPLICA_ACKS (after a failover)",
      registers: [registry],
    }),
    priceDivergences: labelledCounter(registry, {
      name: "spend_ingest_price_divergence_total",
      help: "Calls whose exact cost at the gateway's rates differs from LiteLLM's reported cost by a credit or more, by rate step and what on_divergence did",
      labels: { rate_step: DIVERGENCE_STEPS, action: ON_DIVERGENCE },
    }),
    gatewayBackfilledCalls: new Counter({
      name: "spend_ingest_gateway_backfilled_calls_total",
      help: "Calls in LiteLLM's spend log whose callbacks never arrived, sent to be billed by the backfill",
      registers: [registry],
    }),
    gatewayBackfilledSpendUsd: new Counter({
      name: "spend_ingest_gateway_backfilled_spend_usd_total",
      help: "LiteLLM's own spend (USD) of the calls the backfill sent to be billed",
      registers: [registry],
    }),
    gatewayWatermarkLag: new Gauge({
      name: "spend_ingest_gateway_watermark_lag_seconds",
      help: "How far behind now the backfill has checked LiteLLM's spend log",
      registers: [registry],
    }),
    gatewaySpendLogRetention: new Gauge({
      name: "spend_ingest_gateway_spend_log_retention_seconds",
      help: "LiteLLM's spend-log retention (LITELLM_SPEND_LOG_RETENTION): a watermark lag past it means calls deleted before the backfill saw them",
      registers: [registry],
    }),
    chargesTierAssumed: new Counter({
      name: "spend_ingest_charges_tier_assumed_total",
      help: "Backfilled calls charged at the standard service tier because LiteLLM's spend log kept no tier for them",
      registers: [registry],
    }),
    enforcementCalls: labelledCounter(registry, {
      name: "spend_ingest_enforcement_calls_total",
      help: "Calls to LiteLLM's admin API by this worker: done, failed (retried) or not_found (final)",
      labels: { action: ENFORCEMENT_ACTIONS, outcome: ENFORCEMENT_CALL_OUTCOMES },
    }),
    enforcementPending: new Gauge({
      name: "spend_ingest_enforcement_actions_pending",
      help: "Blocks and unblocks decided and not yet confirmed by LiteLLM, as this worker last counted them",
      registers: [registry],
    }),
    costMapInfo: new Gauge({
      name: "spend_ingest_cost_map_info",
      help: "1 for the LiteLLM cost map of the price book in force: the version and date its book states (empty when unstated) and the file's sha256",
      labelNames: ["version", "date", "sha256"] as const,
      registers: [registry],
    }),
    // Labelled, so that a process that loads no price book (a receiver alone) shows no series, not a 0.
    costMapEntries: new Gauge({
      name: "spend_ingest_cost_map_entries",
      help: "Model entries in the LiteLLM cost map of the price book in force (sample_spec not counted), by the file's sha256",
      labelNames: ["sha256"] as const,
      registers: [registry],
    }),
    gatewayReconcileFailures: new Counter({
      name: "spend_ingest_gateway_reconcile_failures_total",
      help: "Backfill runs that failed: LiteLLM's database could not be read, or what they found could not be recorded",
      registers: [registry],
    }),
    alertOutboxPruned: new Counter({
      name: "spend_ingest_alert_outbox_pruned_total",
      help: "Delivered alert-outbox rows (one per transaction that raised alerts) deleted after ALERT_RETENTION by this worker",
      registers: [registry],
    }),
    chargesRecorded: new Counter({
      name: "spend_ingest_charges_recorded_total",
      help: "Charge receipts committed to the ledger by this worker",
      registers: [registry],
    }),
    chargeOutcomes: labelledCounter(registry, {
      name: "spend_ingest_charge_outcomes_total",
      help: "What the worker did with each usage event",
      labels: { outcome: CHARGE_OUTCOMES },
    }),
    jobDuration: new Histogram({
      name: "spend_ingest_job_duration_seconds",
      help: "Time a worker took to process one job, by job name, whether it succeeded or failed",
      labelNames: ["job"] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    eventToLedger: new Histogram({
      name: "spend_ingest_event_to_ledger_seconds",
      help: "From the call's end (LiteLLM's endTime) to its receipt's commit",
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800],
      registers: [registry],
    }),
  };
  // Its count, like a counter's, is there at 0 before the first job of each name.
  for (const job of USAGE_JOB_NAMES) metrics.jobDuration.zero({ job });
  // Read from Redis once per scrape, within a bound: with Redis away, the process's own metrics
  // are exactly what an operator needs, so they are served and the queue gauges marked stale.
  const counts = onePerScrape(async () => {
    try {
      const read = await Promise.all(queues.map((queue) => withTimeout(queue.getJobCounts(...JOB_STATES), QUEUE_GAUGE_TIMEOUT_MS)));
      return queues.map((queue, index) => ({ queue: queue.name, counts: read[index]! }));
    } catch {
      return null;
    }
  });
  new Gauge({
    name: "spend_ingest_queue_jobs_stale",
    help: "1 when the queue gauges could not be read from Redis at this scrape (they are left out), else 0",
    registers: [registry],
    async collect() {
      this.set((await counts()) === null ? 1 : 0);
    },
  });
  new Gauge({
    name: "spend_ingest_queue_jobs",
    help: "Jobs in each queue, by state",
    labelNames: ["queue", "state"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const { queue, counts: byState } of (await counts()) ?? []) {
        for (const state of JOB_STATES) this.set({ queue, state }, byState[state] ?? 0);
      }
    },
  });
  // Read at scrape from the last run this worker saw (its own, or another's when it skipped its
  // turn), so the gauge keeps growing when no run completes; no series until one was seen.
  let usageRolledUpAt: Date | null = null;
  new Gauge({
    name: "spend_ingest_usage_rollup_lag_seconds",
    help: "Seconds since usage_hourly last took in every charge committed before it (its last rollup run, as this worker last saw it): how far usage trails the charges",
    registers: [registry],
    collect() {
      if (usageRolledUpAt !== null) this.set(Math.max(0, (Date.now() - usageRolledUpAt.getTime()) / 1000));
    },
  });
  return {
    ...metrics,
    usageRolledUpAt: (at: Date) => {
      usageRolledUpAt = at;
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
