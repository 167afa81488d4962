import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { ENFORCEMENT_ACTIONS } from "../../src/platform/db/schema.js";
import { closeDeps, createDeps, createLogger } from "../../src/platform/deps.js";
import { CHARGE_OUTCOMES, CONNECTION_CAP_ACTIONS, REQUEST_REFUSALS, UNAUTHORIZED_REASONS } from "../../src/platform/metrics.js";
import { USAGE_JOB_NAMES } from "../../src/platform/queue.js";
import { buildServer } from "../../src/receiver/server.js";
import { DIVERGENCE_STEPS, ON_DIVERGENCE } from "../../src/usage/rate-fields.js";
import { CALLBACK_REFUSAL_REASONS } from "../../src/usage/usage-event.js";
import { useServiceHarness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { TcpProxy } from "../support/tcp-proxy.js";

const h = useServiceHarness();

async function scrape(): Promise<string> {
  const response = await h.app.inject({ method: "GET", url: "/metrics" });
  expect(response.statusCode).toBe(200);
  expect(response.headers["content-type"]).toContain("text/plain");
  return response.body;
}

/** A sample's value from Prometheus text, 0 when the series has not appeared yet. */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}


describe("/metrics", () => {
  it("moves the counters by the batch's size", async () => {
    const before = await scrape();
    const batch = [1, 2, 3, 4].map((n) => litellmPayload(`metrics-${n}`, "team-metrics"));
    const response = await h.postCallback([...batch, { ...batch[0], id: "metrics-bad", prompt_tokens: -1 }, litellmPayload("metrics-free", "team-metrics", { model: "test-free-model", model_map_information: null })]);
    expect(response.statusCode).toBe(207);
    await h.drainQueue();
    const after = await scrape();
    const delta = (series: string) => sample(after, series) - sample(before, series);
    expect(delta("spend_ingest_events_received_total")).toBe(6);
    expect(delta('spend_ingest_events_rejected_total{reason="invalid_payload"}')).toBe(1);
    expect(delta("spend_ingest_charges_recorded_total")).toBe(5);
    expect(delta('spend_ingest_charge_outcomes_total{outcome="charged"}')).toBe(4);
    expect(delta('spend_ingest_charge_outcomes_total{outcome="free"}')).toBe(1);
    expect(delta("spend_ingest_event_to_ledger_seconds_count")).toBe(5);
    expect(delta('spend_ingest_job_duration_seconds_count{job="charge-usage"}')).toBe(1);
    expect(after).toMatch(/^spend_ingest_queue_jobs\{queue="usage-events",state="completed"\} \d+$/m);
    expect(after).toMatch(/^spend_ingest_queue_jobs\{queue="usage-events",state="failed"\} 0$/m);
    expect(after).toContain("spend_ingest_process_cpu_seconds_total");
  });
});

describe("/metrics of a process that has done nothing yet", () => {
  it("has every labelled counter's every label set at 0, so increase() sees the first count, and counts callback 401s by reason without logging the token", async () => {
    let logText = "";
    const capture = new Writable({
      write(chunk, _encoding, done) {
        logText += String(chunk);
        done();
      },
    });
    const deps = createDeps(h.settings, { logger: createLogger(h.settings, capture) });
    const app = await buildServer(deps);
    try {
      const fresh = (await app.inject({ method: "GET", url: "/metrics" })).body;
      const zeroSeries = (name: string) => fresh.split("\n").filter((line) => line.startsWith(`${name}{`) && line.endsWith("} 0")).sort();
      const expected = (name: string, labels: Array<Record<string, string>>) =>
        labels.map((set) => `${name}{${Object.entries(set).map(([label, value]) => `${label}="${value}"`).join(",")}} 0`).sort();
      expect(zeroSeries("spend_ingest_events_rejected_total")).toEqual(expected("spend_ingest_events_rejected_total", CALLBACK_REFUSAL_REASONS.map((reason) => ({ reason }))));
      expect(zeroSeries("spend_ingest_requests_refused_total")).toEqual(expected("spend_ingest_requests_refused_total", REQUEST_REFUSALS.map((reason) => ({ reason }))));
      expect(zeroSeries("spend_ingest_requests_unauthorized_total")).toEqual(expected("spend_ingest_requests_unauthorized_total", UNAUTHORIZED_REASONS.map((reason) => ({ reason }))));
      expect(zeroSeries("spend_ingest_connections_closed_at_cap_total")).toEqual(
        expected("spend_ingest_connections_closed_at_cap_total", CONNECTION_CAP_ACTIONS.map((action) => ({ action }))),
      );
      expect(zeroSeries("spend_ingest_charge_outcomes_total")).toEqual(expected("spend_ingest_charge_outcomes_total", CHARGE_OUTCOMES.map((outcome) => ({ outcome }))));
      expect(zeroSeries("spend_ingest_price_divergence_total")).toEqual(
        expected("spend_ingest_price_divergence_total", DIVERGENCE_STEPS.flatMap((step) => ON_DIVERGENCE.map((action) => ({ rate_step: step, action })))),
      );
      expect(zeroSeries("spend_ingest_enforcement_calls_total")).toEqual(
        expected("spend_ingest_enforcement_calls_total", ENFORCEMENT_ACTIONS.flatMap((action) => ["done", "failed", "not_found"].map((outcome) => ({ action, outcome })))),
      );
      expect(zeroSeries("spend_ingest_job_duration_seconds_count")).toEqual(expected("spend_ingest_job_duration_seconds_count", USAGE_JOB_NAMES.map((job) => ({ job }))));
      // Spelled out, as an operator's alert rule would name them.
      expect(fresh).toContain('spend_ingest_events_rejected_total{reason="no_idempotency_key"} 0');
      expect(fresh).toContain('spend_ingest_price_divergence_total{rate_step="cost_map",action="quarantine"} 0');

      const callback = (authorization?: string) =>
        app.inject({ method: "POST", url: "/v1/callbacks/litellm", headers: authorization ? { authorization } : {}, payload: [] });
      const wrongToken = "wrong-token-that-must-never-be-logged";
      expect((await callback()).statusCode).toBe(401);
      expect((await callback(`Basic ${Buffer.from(`user:${wrongToken}`).toString("base64")}`)).statusCode).toBe(401);
      expect((await callback(`Bearer ${wrongToken}`)).statusCode).toBe(401);
      const after = (await app.inject({ method: "GET", url: "/metrics" })).body;
      expect(sample(after, 'spend_ingest_requests_unauthorized_total{reason="no_token"}')).toBe(2);
      expect(sample(after, 'spend_ingest_requests_unauthorized_total{reason="unknown_token"}')).toBe(1);
      expect(logText).toContain("incoming request");
      expect(logText).not.toContain(wrongToken);
    } finally {
      await app.close();
      await closeDeps(deps);
    }
  });
});

describe("/readyz", () => {
  it("answers 503 while PostgreSQL is away and 200 again when it returns, without a restart", async () => {
    const postgres = new URL(h.settings.databaseUrl);
    const proxy = await TcpProxy.start({ host: postgres.hostname, port: Number(postgres.port || 5432) });
    const throughProxy = new URL(h.settings.databaseUrl);
    throughProxy.port = String(proxy.port);
    const deps = createDeps({ ...h.settings, databaseUrl: throughProxy.toString() }, { logger: createLogger({ logLevel: "silent" }) });
    const app = await buildServer(deps, "health-and-metrics");
    const ready = async () => (await app.inject({ method: "GET", url: "/readyz" })).json();
    try {
      // Ready once its Redis connection is up.
      await waitFor(async () => (await ready()).status === "ready");
      await proxy.cut();
      expect(await ready()).toMatchObject({ status: "unavailable", checks: { postgres: "down", redis: "ok" } });
      await proxy.open();
      await waitFor(async () => (await ready()).status === "ready");
    } finally {
      await app.close();
      await proxy.cut();
      await closeDeps(deps);
    }
  });
});
