import { describe, expect, it } from "vitest";
import { closeDeps, createDeps, createLogger } from "../../src/platform/deps.js";
import { buildServer } from "../../src/receiver/server.js";
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

describe("/readyz", () => {
  it("answers 503 while PostgreSQL is away and 200 again when it returns, without a restart", async () => {
    const postgres = new URL(h.settings.databaseUrl);
    const proxy = await TcpProxy.start({ host: postgres.hostname, port: Number(postgres.port || 5432) });
    const throughProxy = new URL(h.settings.databaseUrl);
    throughProxy.port = String(proxy.port);
    const deps = createDeps({ ...h.settings, databaseUrl: throughProxy.toString() }, { logger: createLogger({ logLevel: "silent" }) });
    const app = await buildServer(deps, { receiver: false });
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
