import type { Queue } from "bullmq";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export type ChargeOutcome = "charged" | "free" | "duplicate" | "conflict" | "quarantined" | "failed_call_skipped";

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

function withinMs<T>(promise: Promise<T>, milliseconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${milliseconds} ms`)), milliseconds);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The process's own Prometheus registry: a receiver and a worker running apart each expose
 * what they did. Queue depth is read from Redis at scrape time, so any process shows it.
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
    eventsRejected: new Counter({
      name: "spend_ingest_events_rejected_total",
      help: "Callback items refused at the door and quarantined, by reason",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    billingAccountOverruled: new Counter({
      name: "spend_ingest_billing_account_overruled_total",
      help: "Callback items whose caller named another account in spend_logs_metadata than the trusted source that pays",
      registers: [registry],
    }),
    requestsRefused: new Counter({
      name: "spend_ingest_requests_refused_total",
      help: "Callback requests refused whole (503, 413), by reason; not_replicated: queued, but no replica acknowledged in time",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    connectionsClosedAtCap: new Counter({
      name: "spend_ingest_connections_closed_at_cap_total",
      help: "Connections closed because the server held its most (MAX_CONNECTIONS, or fewer for the file-descriptor limit): evicted, an idle one a newcomer replaced; refused, a newcomer, every connection being busy or under a second old",
      labelNames: ["action"] as const,
      registers: [registry],
    }),
    unreplicatedAccepts: new Counter({
      name: "spend_ingest_unreplicated_accepts_total",
      help: "Callback requests answered 2xx while the queue's Redis master had fewer replicas in sync than QUEUE_REPLICA_ACKS (after a failover)",
      registers: [registry],
    }),
    priceDivergences: new Counter({
      name: "spend_ingest_price_divergence_total",
      help: "Calls whose exact cost at the gateway's rates differs from LiteLLM's reported cost by a credit or more, by rate step and what on_divergence did",
      labelNames: ["rate_step", "action"] as const,
      registers: [registry],
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
    enforcementCalls: new Counter({
      name: "spend_ingest_enforcement_calls_total",
      help: "Calls to LiteLLM's admin API by this worker: done, failed (retried) or not_found (final)",
      labelNames: ["action", "outcome"] as const,
      registers: [registry],
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
    chargesRecorded: new Counter({
      name: "spend_ingest_charges_recorded_total",
      help: "Charge receipts committed to the ledger by this worker",
      registers: [registry],
    }),
    chargeOutcomes: new Counter({
      name: "spend_ingest_charge_outcomes_total",
      help: "What the worker did with each usage event",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    jobDuration: new Histogram({
      name: "spend_ingest_job_duration_seconds",
      help: "Time a worker took to process one job, by job name",
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
  // Read from Redis once per scrape, within a bound: with Redis away, the process's own metrics
  // are exactly what an operator needs, so they are served and the queue gauges marked stale.
  const counts = onePerScrape(async () => {
    try {
      const read = await Promise.all(queues.map((queue) => withinMs(queue.getJobCounts(...JOB_STATES), QUEUE_GAUGE_TIMEOUT_MS)));
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
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
