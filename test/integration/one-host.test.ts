import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { useTestDatabase } from "../support/harness.js";
import { waitFor } from "../support/wait.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { freePort } from "../support/ports.js";
import { listeningAddresses, listeningPorts, type ServiceProcess, startServiceProcess } from "../support/service-process.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { ADMIN_TOKEN, INGEST_TOKEN, TEST_REDIS_URL } from "../support/test-env.js";

// Every role started from one environment on one host, as systemd, pm2 or a plain VM runs
// them from one env file: only the receiver takes PORT.
const prefix = useQueuePrefix();
const database = useTestDatabase();
const services: ServiceProcess[] = [];

type Entry = "receiver" | "usage-worker" | "all-in-one";

const start = (entry: Entry, env: Record<string, string>) => {
  const service = startServiceProcess(entry, env);
  services.push(service);
  return service;
};

/** One env file's settings: a fixed PORT, the same for every process given it. */
const oneEnvironment = async (settings: Record<string, string> = {}): Promise<Record<string, string>> => ({
  DATABASE_URL: database.url,
  REDIS_URL: TEST_REDIS_URL,
  INGEST_TOKENS: INGEST_TOKEN,
  ADMIN_TOKEN,
  PORT: String(await freePort()),
  QUEUE_PREFIX: prefix,
  ...settings,
});

type StartLine = { msg: string; metricsPort?: number; host?: string; port?: number; maxConnections?: number; nofileLimit?: number | null };

/** The process's log line `msg` ("usage worker started", "receiver started"), once it is written. */
async function startLine(service: ServiceProcess, msg = "usage worker started"): Promise<StartLine> {
  const parsed = () =>
    service.lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as StartLine).find((line) => line.msg === msg);
  await waitFor(() => {
    if (service.child.exitCode !== null) throw new Error(`${service.entry} exited ${service.child.exitCode}: ${service.lines.join("\n")}`);
    return parsed() !== undefined;
  }, 30_000);
  return parsed()!;
}
const workerStartLine = (worker: ServiceProcess) => startLine(worker);

async function postCalls(receiverUrl: string, ids: string[]): Promise<void> {
  const posted = await fetch(`${receiverUrl}/v1/callbacks/litellm`, {
    method: "POST",
    headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(ids.map((id) => litellmPayload(id, "team-one-host"))),
  });
  expect(posted.status).toBe(202);
}

async function receiptsFor(prefix: string): Promise<number> {
  const { rows } = await database.pool.query("SELECT count(*)::int AS n FROM charge_receipts WHERE idempotency_key LIKE $1", [`${prefix}-%`]);
  return rows[0].n;
}

async function stopAll(): Promise<number[]> {
  const running = services.splice(0).filter((service) => service.child.exitCode === null);
  const exits = running.map((service) => once(service.child, "exit"));
  for (const service of running) service.child.kill("SIGTERM");
  return (await Promise.all(exits)).map(([code]) => code as number);
}

// Before the books' tie-out (hooks after a test run in reverse order): every process still running stops cleanly.
afterEach(async () => {
  const codes = await stopAll();
  expect(codes).toEqual(codes.map(() => 0));
});

describe("a receiver and workers from one environment on one host", () => {
  it("all run, every call is charged, and each worker serves health and metrics on the port its start line names", async () => {
    const env = await oneEnvironment({ METRICS_PORT: "0" });
    const receiver = start("receiver", env);
    const workers = [1, 2, 3].map(() => start("usage-worker", env));
    expect(await receiver.listeningAt).toBe(`http://127.0.0.1:${env.PORT}`);
    const metricsPorts = (await Promise.all(workers.map(workerStartLine))).map((line) => line.metricsPort!);
    expect(new Set([Number(env.PORT), ...metricsPorts]).size).toBe(4);

    const calls = Array.from({ length: 300 }, (_, n) => `one-host-${n}`);
    for (let batch = 0; batch < calls.length; batch += 100) await postCalls(await receiver.listeningAt, calls.slice(batch, batch + 100));
    await waitFor(async () => (await receiptsFor("one-host")) === calls.length, 30_000);

    const chargesRecorded = async (port: number) =>
      Number(/^spend_ingest_charges_recorded_total (\S+)$/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1]);
    // Counted just after the commit the receipts query may already see.
    await waitFor(async () => (await Promise.all(metricsPorts.map(chargesRecorded))).reduce((sum, n) => sum + n, 0) === calls.length);
    for (const port of metricsPorts) {
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      // A worker's listener is health and metrics only.
      expect((await fetch(`http://127.0.0.1:${port}/v1/callbacks/litellm`, { method: "POST" })).status).toBe(404);
    }
    expect([receiver, ...workers].map((service) => service.child.exitCode)).toEqual([null, null, null, null]);
  }, 90_000);

  it("a worker without METRICS_PORT listens on nothing, and charges", async () => {
    const env = await oneEnvironment();
    const receiver = start("receiver", env);
    const worker = start("usage-worker", env);
    const receiverUrl = await receiver.listeningAt;
    expect((await workerStartLine(worker)).metricsPort).toBeUndefined();

    await postCalls(receiverUrl, ["no-listener-1"]);
    await waitFor(async () => (await receiptsFor("no-listener")) === 1);
    expect(listeningPorts(worker.child.pid!)).toEqual([]);
    // The same reading finds the receiver's one listener, so an empty list means none.
    expect(listeningPorts(receiver.child.pid!)).toEqual([Number(env.PORT)]);
  }, 60_000);

  it("every listener binds HOST: every interface unless set, only that address when set", async () => {
    const everywhere = start("receiver", await oneEnvironment());
    const loopback = start("receiver", await oneEnvironment({ HOST: "127.0.0.1" }));
    const worker = start("usage-worker", await oneEnvironment({ HOST: "127.0.0.1", METRICS_PORT: "0" }));
    const [everywhereLine, loopbackLine, workerLine] = await Promise.all([
      startLine(everywhere, "receiver started"),
      startLine(loopback, "receiver started"),
      startLine(worker, "health and metrics server started"),
      // Until then a SIGTERM finds no handler yet (afterEach expects a clean stop).
      workerStartLine(worker),
    ]);
    expect(everywhereLine).toMatchObject({ host: "0.0.0.0", maxConnections: 1000, nofileLimit: expect.any(Number) });
    expect(loopbackLine.host).toBe("127.0.0.1");
    expect(listeningAddresses(everywhere.child.pid!)).toEqual([{ address: "0.0.0.0", port: everywhereLine.port }]);
    expect(listeningAddresses(loopback.child.pid!)).toEqual([{ address: "127.0.0.1", port: loopbackLine.port }]);
    expect(listeningAddresses(worker.child.pid!)).toEqual([{ address: "127.0.0.1", port: workerLine.port }]);
    // Served: each has turned its event loop since its start line, so SIGTERM finds its handler.
    for (const line of [everywhereLine, loopbackLine]) expect((await fetch(`http://127.0.0.1:${line.port}/healthz`)).status).toBe(200);
  }, 60_000);
});

describe("a start-up failure: one line on stderr naming its cause, never a stack trace", () => {
  let holder: Server | undefined;

  /** A port another process already listens on, on every address. */
  async function portInUse(): Promise<number> {
    holder = createServer();
    holder.listen(0, "0.0.0.0");
    await once(holder, "listening");
    return (holder.address() as AddressInfo).port;
  }

  afterEach(() => {
    holder?.close();
    holder = undefined;
  });

  /** The exit code and the one line the process wrote: nothing else on stdout or stderr. */
  async function failedStart(entry: Entry, env: Record<string, string>) {
    const service = start(entry, env);
    const [code] = await once(service.child, "exit");
    expect(service.errors).toHaveLength(1);
    expect(service.lines).toEqual(service.errors);
    return { code, line: service.errors[0] };
  }

  it("a receiver on a PORT in use exits 2", async () => {
    const port = await portInUse();
    expect(await failedStart("receiver", await oneEnvironment({ PORT: String(port) }))).toEqual({
      code: 2,
      line: `spend-ingest: PORT ${port} is in use (EADDRINUSE); choose another PORT`,
    });
  });

  it("a worker on a METRICS_PORT in use exits 2", async () => {
    const port = await portInUse();
    expect(await failedStart("usage-worker", await oneEnvironment({ METRICS_PORT: String(port) }))).toEqual({
      code: 2,
      line: `spend-ingest: METRICS_PORT ${port} is in use (EADDRINUSE); choose another METRICS_PORT`,
    });
  });

  it("a METRICS_PORT that is not a port exits 2", async () => {
    expect(await failedStart("usage-worker", await oneEnvironment({ METRICS_PORT: "9464x" }))).toEqual({
      code: 2,
      line: "spend-ingest: invalid setting METRICS_PORT: a port number from 0 to 65535",
    });
  });

  it("a master key that cannot be an HTTP header value exits 2, naming the setting and never the key", async () => {
    const key = "sk-hostile-secret\r\nX-Injected: 1";
    const { code, line } = await failedStart("usage-worker", await oneEnvironment({ LITELLM_ADMIN_URL: "http://127.0.0.1:4000", LITELLM_MASTER_KEY: key }));
    expect({ code, line }).toEqual({
      code: 2,
      line: "spend-ingest: invalid setting LITELLM_MASTER_KEY: 1 to 4096 visible ASCII characters (no space, control character or other letter): it is sent in an HTTP header",
    });
    expect(line).not.toContain("hostile-secret");
  });

  it("a LITELLM_ADMIN_URL that does not parse exits 2", async () => {
    expect(await failedStart("usage-worker", await oneEnvironment({ LITELLM_ADMIN_URL: "not a url", LITELLM_MASTER_KEY: "sk-master-key" }))).toEqual({
      code: 2,
      line: "spend-ingest: invalid setting LITELLM_ADMIN_URL: an http or https URL, such as http://litellm:4000",
    });
  });

  it("a HOST that is not an IP address exits 2; one that is not this machine's, too", async () => {
    expect(await failedStart("receiver", await oneEnvironment({ HOST: "localhost" }))).toEqual({
      code: 2,
      line: "spend-ingest: invalid setting HOST: an IP address to listen on, such as 0.0.0.0, 127.0.0.1 or ::",
    });
    // TEST-NET-3 (RFC 5737): never an address of this machine.
    expect(await failedStart("receiver", await oneEnvironment({ HOST: "203.0.113.77" }))).toEqual({
      code: 2,
      line: "spend-ingest: invalid setting HOST: 203.0.113.77 is not an address of this machine (EADDRNOTAVAIL)",
    });
  });

  it("a file-descriptor limit that leaves no room for connections exits 2", async () => {
    const service = startServiceProcess("receiver", await oneEnvironment(), [], { openFileLimit: 100 });
    services.push(service);
    const [code] = await once(service.child, "exit");
    expect({ code, lines: service.lines }).toEqual({
      code: 2,
      lines: ["spend-ingest: the file-descriptor limit (ulimit -n) of 100 leaves no room for connections; raise it above 128 (the descriptors the process keeps for itself)"],
    });
  });

  it("a price book that does not load exits 2", async () => {
    expect(await failedStart("usage-worker", await oneEnvironment({ PRICING_FILE: "config/no-such-pricing.yaml" }))).toEqual({
      code: 2,
      line: expect.stringMatching(/^spend-ingest: invalid setting PRICING_FILE: cannot read the price book .*no-such-pricing\.yaml/),
    });
  });

  it("a price book whose cost map is refused exits 2, naming the map's problem", async () => {
    const directory = mkdtempSync(join(tmpdir(), "spend-ingest-refused-map-"));
    writeFileSync(join(directory, "map.json"), '{"message": "Not Found"}');
    writeFileSync(join(directory, "pricing.yaml"), "credits_per_usd: 10000000\nlitellm_cost_map: map.json\n");
    expect(await failedStart("usage-worker", await oneEnvironment({ PRICING_FILE: join(directory, "pricing.yaml") }))).toEqual({
      code: 2,
      line: `spend-ingest: invalid setting PRICING_FILE: LiteLLM cost map ${join(directory, "map.json")} entry "message" is not an object`,
    });
  });

  it("npm start against a database that does not exist exits 2; against a PostgreSQL that does not answer, 1", async () => {
    expect(await failedStart("all-in-one", await oneEnvironment({ DATABASE_URL: `${database.url}_missing` }))).toEqual({
      code: 2,
      line: `spend-ingest: invalid setting DATABASE_URL: database "${database.name}_missing" does not exist`,
    });
    const down = `postgres://postgres@127.0.0.1:${await freePort()}/spend_ingest`;
    expect(await failedStart("all-in-one", await oneEnvironment({ DATABASE_URL: down }))).toEqual({
      code: 1,
      line: expect.stringMatching(/^spend-ingest: PostgreSQL at DATABASE_URL did not answer \(.*ECONNREFUSED.*\); no migration applied$/),
    });
  });
});
