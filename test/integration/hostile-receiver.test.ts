import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect, type Socket } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSettings, ROLES } from "../../src/platform/config.js";
import { createUsageQueue } from "../../src/platform/queue-producer.js";
import { waitFor } from "../support/wait.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { peakRssMib, type ServiceProcess, startServiceProcess } from "../support/service-process.js";
import { useQueuePrefix } from "../support/queue-prefix.js";
import { ADMIN_DATABASE_URL, ADMIN_TOKEN, INGEST_TOKEN, TEST_REDIS_URL } from "../support/test-env.js";

/** The receiver's stated memory bound (docs/guides/performance.md): peak RSS under every probe below. */
const RECEIVER_RSS_BOUND_MIB = 512;
const MIB = 1024 * 1024;

// As `npm run start:receiver` runs it, node options and all.
const RECEIVER_NODE_ARGS = JSON.parse(readFileSync("package.json", "utf8"))
  .scripts["start:receiver"].split(" ")
  .filter((word: string) => word.startsWith("--"));

const prefix = useQueuePrefix();
const RECEIVER_ENV = {
  DATABASE_URL: ADMIN_DATABASE_URL,
  REDIS_URL: TEST_REDIS_URL,
  INGEST_TOKENS: INGEST_TOKEN,
  ADMIN_TOKEN,
  PORT: "0",
  QUEUE_PREFIX: prefix,
};
// The bounds the receiver reads from that environment: its largest body, and the bytes of bodies it takes at once.
const { maxBodyBytes, maxBytesInFlight } = parseSettings(ROLES.receiver, RECEIVER_ENV);
let receiver: ServiceProcess;
let baseUrl: string;
const peaks: Record<string, number> = {};

function post(body: Uint8Array | string) {
  return fetch(`${baseUrl}/v1/callbacks/litellm`, {
    method: "POST",
    headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
    body,
  });
}

/** A body of `bytes` made of the tiny item `unit` repeated, as a JSON array. */
function repeatedItems(unit: string, bytes: number): Buffer {
  const count = Math.floor((bytes - 2) / (unit.length + 1));
  return Buffer.from(`[${Array(count).fill(unit).join(",")}]`);
}

type Answer = { status: number; retryAfter: string | null; body: unknown };

/**
 * A callback whose headers declare a body of `bytes` and which sends its first byte and then a
 * space a second, never the rest: the receiver holds its share of the bytes-in-flight budget
 * until it is released (the drip keeps the socket from its idle timeout), or answers at once
 * when that share does not fit.
 */
function heldBody(bytes: number): { answered: Promise<Answer>; release: () => void } {
  const request = httpRequest(`${baseUrl}/v1/callbacks/litellm`, {
    method: "POST",
    agent: false,
    headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json", "content-length": String(bytes) },
  });
  // Its end is the test's doing: release, or the receiver closing a refused one.
  request.on("error", () => {});
  request.write("[");
  const drip = setInterval(() => request.write(" "), 1_000);
  const answered = new Promise<Answer>((resolve) =>
    request.on("response", async (response) => {
      let text = "";
      for await (const chunk of response.setEncoding("utf8")) text += chunk;
      const retryAfter = response.headers["retry-after"];
      resolve({ status: response.statusCode!, retryAfter: typeof retryAfter === "string" ? retryAfter : null, body: JSON.parse(text) });
    }),
  );
  return {
    answered,
    release: () => {
      clearInterval(drip);
      request.destroy();
    },
  };
}

/** A callback on a connection of its own, its whole body written at once. */
function postOnOwnConnection(body: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${baseUrl}/v1/callbacks/litellm`, {
      method: "POST",
      agent: false,
      // Kept alive, as LiteLLM's client keeps its connections: a receiver that refuses a body
      // before reading it then drains it, so the client finishes its upload and reads the answer.
      // Without this Node's client asks to close, the receiver closes once it has answered, and
      // the client's writes of the unread rest may fail (EPIPE) before it has read the answer.
      headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json", "content-length": String(body.length), connection: "keep-alive" },
    });
    request.on("error", reject);
    request.on("response", async (response) => {
      let text = "";
      for await (const chunk of response.setEncoding("utf8")) text += chunk;
      const retryAfter = response.headers["retry-after"];
      resolve({ status: response.statusCode!, retryAfter: typeof retryAfter === "string" ? retryAfter : null, body: JSON.parse(text) });
      // This connection is the request's alone: nothing will reuse it.
      request.destroy();
    });
    request.end(body);
  });
}

async function answerOf(response: Response): Promise<Answer> {
  return { status: response.status, retryAfter: response.headers.get("retry-after"), body: await response.json() };
}

const BUSY = { status: 503, retryAfter: "5", body: { error: { code: "receiver_busy" } } };

async function expectAliveUnderBound(probe: string) {
  expect((await fetch(`${baseUrl}/healthz`)).status).toBe(200);
  peaks[probe] = Math.round(peakRssMib(receiver.child.pid!));
  expect(peaks[probe]).toBeLessThan(RECEIVER_RSS_BOUND_MIB);
}

beforeAll(async () => {
  receiver = startServiceProcess("receiver", RECEIVER_ENV, RECEIVER_NODE_ARGS);
  baseUrl = await receiver.listeningAt;
});

afterAll(async () => {
  receiver?.child.kill("SIGKILL");
  console.log(`receiver peak RSS by probe (MiB): ${JSON.stringify(peaks)}`);
});

describe("a receiver under hostile bodies and sockets (npm run start:receiver, real process)", () => {
  it("refuses bodies of tiny items at 1, 4 and 32 MiB with 413 before parsing them, and stays up", async () => {
    for (const mib of [1, 4, 32]) {
      const answer = await post(repeatedItems("{}", mib * MIB - 64));
      expect(answer.status).toBe(413);
      expect(await answer.json()).toMatchObject({ error: { code: "too_many_items" } });
      await expectAliveUnderBound(`tiny items ${mib} MiB`);
    }
  });

  it("refuses one item made of millions of tiny values on its own: 207, its key kept, never parsed", async () => {
    const values = Buffer.from(`[{"id":"one","padding":[${Array(8 * MIB).fill("{}").join(",")}]}]`);
    const answer = await post(values);
    expect(answer.status).toBe(207);
    expect(await answer.json()).toMatchObject({ accepted: 0, rejected: [{ index: 0, id: "one", reason: "item_too_large" }] });
    await expectAliveUnderBound("one item of tiny values");
  });

  it("refuses on its own one call over the per-item bounds and accepts the other 511: values, depth, tools, metadata", async () => {
    const ordinary = (batch: string) => Array.from({ length: 511 }, (_, index) => JSON.stringify(litellmPayload(`${batch}-${index}`, "team-ok")));
    // What one tenant controls in its own call, which LiteLLM copies into the payload as sent.
    const shapes = {
      values: { overrides: { metadata: { requester_metadata: "__BIG__" } }, big: `[${"0,".repeat(1_000_000)}0]` },
      depth: { overrides: { metadata: { requester_metadata: "__BIG__" } }, big: `${"[".repeat(100_000)}${"]".repeat(100_000)}` },
      tools: { overrides: { model_parameters: { tools: "__BIG__" } }, big: `[${Array(1_000_000).fill('{"type":"function"}').join(",")}]` },
      metadata: { overrides: { metadata: { __BIG__: 0 } }, big: Array.from({ length: 600_000 }, (_, index) => `"k${index}":0`).join(",") },
    };
    const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const queue = createUsageQueue(redis, prefix);
    try {
      for (const [shape, { overrides, big }] of Object.entries(shapes)) {
        const bad = JSON.stringify(litellmPayload(`${shape}-bad`, "team-hostile", overrides)).replace('"__BIG__"', big).replace('"__BIG__":0', big);
        const items = ordinary(shape);
        items.splice(200, 0, bad);
        const answer = await post(`[${items.join(",")}]`);
        expect(answer.status, shape).toBe(207);
        const body = await answer.json();
        expect(body, shape).toMatchObject({ accepted: 511, rejected: [{ index: 200, id: `${shape}-bad`, reason: "item_too_large" }] });
        // Queued: the 511 calls to be charged, and the refused one to be quarantined with its key and billing fields.
        const jobs = await queue.getJobs(["waiting"]);
        const keys = jobs.flatMap((job) => job.data.events ?? []).map((event: { idempotencyKey: string }) => event.idempotencyKey);
        expect(keys.filter((key) => key.startsWith(`${shape}-`)), shape).toHaveLength(511);
        const quarantined = jobs.flatMap((job) => job.data.items ?? []).find((item: { idempotencyKey: string }) => item.idempotencyKey === `${shape}-bad`);
        expect(quarantined, shape).toMatchObject({
          reason: "item_too_large",
          item: { not_kept: expect.stringContaining("only the fields billing reads were kept"), metadata: { user_api_key_team_id: "team-hostile" } },
        });
      }
    } finally {
      await queue.close();
      await redis.quit();
    }
    await expectAliveUnderBound("one oversized call among 511");
  });

  it("counts what a broken ndjson line or bare tokens would hide: the line that holds it is refused on its own", async () => {
    // A string cut by a newline right after a backslash, then 32 MiB of empty objects on the next line.
    const hidden = Buffer.concat([Buffer.from('{"id":"cut","a":"\\\n['), repeatedItems("{}", 32 * MIB - 64).subarray(1)]);
    // Python's NaN literal, millions of times, separated by spaces only.
    const literals = Buffer.from(`{"id":"first"}\n${"NaN ".repeat(8 * MIB - 4)}`);
    for (const body of [hidden, literals]) {
      const answer = await post(body);
      expect(answer.status).toBe(207);
      expect(((await answer.json()) as { rejected: unknown[] }).rejected).toContainEqual(expect.objectContaining({ index: 1, reason: "item_too_large" }));
    }
    await expectAliveUnderBound("hidden values");
  });

  it("refuses whole, 400, a body that is not an array, an object or lines of JSON", async () => {
    const answer = await post(`{"id":"unclosed",${"[".repeat(1_000)}`);
    expect(answer.status).toBe(400);
    expect(await answer.json()).toMatchObject({ error: { code: "invalid_json" } });
  });

  it("bounds the 207 answer: the first 100 refusals in full, then a count", async () => {
    const items = Array.from({ length: 4000 }, (_, index) => ({ id: `refused-${index}`, prompt_tokens: -1 }));
    const answer = await post(JSON.stringify(items));
    expect(answer.status).toBe(207);
    const body = (await answer.json()) as { accepted: number; rejected: unknown[]; rejected_count: number };
    expect(body).toMatchObject({ accepted: 0, rejected_count: 4000 });
    expect(body.rejected).toHaveLength(100);
  });

  it("takes 30 concurrent 31 MiB batches within its bytes-in-flight budget: each 202 or 503 with Retry-After", async () => {
    const prompt = "p".repeat(60_000);
    const batch = Buffer.from(
      JSON.stringify(
        Array.from({ length: 512 }, (_, index) =>
          litellmPayload(`big-${index}`, "team-big", { messages: [{ role: "user", content: prompt }] }),
        ),
      ),
    );
    expect(batch.length).toBeGreaterThan(30 * MIB);
    expect(batch.length).toBeLessThan(32 * MIB);
    // Through node:http, one connection each: fetch (undici) sending 30 such bodies from one busy
    // process wrote their headers 0.8 s apart and their bodies so slowly that the receiver's 10 s
    // timeouts closed them (EPIPE), where this client is answered within a second.
    const answers = await Promise.all(Array.from({ length: 30 }, () => postOnOwnConnection(batch)));
    const statuses = answers.map((answer) => answer.status);
    console.log(`30 concurrent 31 MiB batches: ${statuses.filter((status) => status === 202).length} accepted, the rest 503`);
    expect(statuses.every((status) => status === 202 || status === 503)).toBe(true);
    expect(statuses.filter((status) => status === 202).length).toBeGreaterThan(0);
    for (const answer of answers.filter((answer) => answer.status === 503)) expect(answer).toMatchObject(BUSY);
    await expectAliveUnderBound("30 concurrent 31 MiB batches");

    // Whether any of those met a full budget depends on timing; this does not. The budget held
    // full by bodies of the largest size that never finish, then one more: only that one is
    // refused, once the others hold their shares, so the first answer is its 503.
    const fitting = Math.floor(maxBytesInFlight / maxBodyBytes);
    const held = Array.from({ length: fitting + 1 }, () => heldBody(maxBodyBytes));
    const oneCall = JSON.stringify([litellmPayload("after-held", "team-big")]);
    try {
      expect(await Promise.race(held.map(({ answered }) => answered))).toMatchObject(BUSY);
      // While they hold it, any batch is refused, however small.
      expect(await answerOf(await post(oneCall))).toMatchObject(BUSY);
    } finally {
      for (const { release } of held) release();
    }
    // Their shares come back when their connections close: a batch is taken again.
    await waitFor(async () => (await post(oneCall)).status === 202);
  }, 120_000);

  it("stays answerable and under its bound with the bodies in flight that cost the most to parse", async () => {
    // 4,096 items of 243 values each (995,328 in all, under the old whole-body limit), 16 MiB:
    // the shape that took the receiver past its bound when the whole body was parsed at once.
    const item = (index: number) => `{"id":"worst-${index}","metadata":{"requester_metadata":[${Array(236).fill('"abcdefghijklmn"').join(",")}]}}`;
    const body = Buffer.from(`[${Array.from({ length: 4096 }, (_, index) => item(index)).join(",")}]`);
    expect(body.length).toBeGreaterThan(15 * MIB);
    let answered = 0;
    const bodies = Array.from({ length: 6 }, () => post(body).then((answer) => (answered++, answer.status)));
    // Asked once the first body is answered, while the rest are read: items are read a slice at a
    // time, so it is answered between slices (how many bodies were still in flight is logged, not
    // asserted: on a busy machine they may all be answered first).
    await Promise.race(bodies);
    const health = await fetch(`${baseUrl}/healthz`);
    const stillInFlight = 6 - answered;
    expect(health.status).toBe(200);
    const statuses = await Promise.all(bodies);
    console.log(`worst-shape bodies: ${statuses.join(" ")}; /healthz answered with ${stillInFlight} still in flight`);
    expect(statuses.every((status) => status === 207 || status === 503)).toBe(true);
    await expectAliveUnderBound("6 concurrent 16 MiB bodies of 1M values");
  }, 120_000);

  it("keeps answering with 1,100 one-byte sockets open, and closes them and trickling sockets in seconds", async () => {
    const sockets: Socket[] = [];
    // How long each socket stayed open after it connected.
    const openFor: number[] = [];
    for (let index = 0; index < 1_100; index++) {
      const socket = connect(Number(new URL(baseUrl).port), "127.0.0.1");
      let connectedAt = Date.now();
      socket.on("connect", () => {
        connectedAt = Date.now();
        // Each sends one byte of a request line and nothing more: not silent, not a request either.
        socket.write("P");
      });
      socket.on("error", () => {});
      socket.on("close", () => openFor.push(Date.now() - connectedAt));
      sockets.push(socket);
    }
    await waitFor(() => sockets.every((socket) => !socket.connecting || socket.destroyed), 10_000);
    // Past the connection cap the newcomer takes a silent socket's place.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const started = Date.now();
    const answer = await fetch(`${baseUrl}/healthz`);
    expect(answer.status).toBe(200);
    // Well before any silent socket's timeout (10 s) could have made room.
    expect(Date.now() - started).toBeLessThan(5_000);

    const trickle = connect(Number(new URL(baseUrl).port), "127.0.0.1");
    trickle.on("error", () => {});
    let trickleClosed = false;
    trickle.on("close", () => (trickleClosed = true));
    const header = "POST /v1/callbacks/litellm HTTP/1.1\r\nHost: x\r\n";
    let sent = 0;
    const dripping = setInterval(() => sent < header.length && trickle.write(header[sent++]!), 500);
    try {
      await waitFor(() => openFor.length === sockets.length && trickleClosed, 25_000);
    } catch (error) {
      // Which sockets the server kept, and for how long: a bare timeout would not say.
      const stillOpen = sockets.filter((socket) => !socket.destroyed && !socket.closed).length;
      const receiverAlive = await fetch(`${baseUrl}/healthz`).then((reply) => reply.status, (failure: Error) => failure.message);
      throw new Error(
        `${(error as Error).message}: ${stillOpen} of ${sockets.length} one-byte sockets still open, trickle ${trickleClosed ? "closed" : `open after ${sent} bytes`}, ` +
          `longest closed after ${Math.max(0, ...openFor)} ms, /healthz ${receiverAlive}`,
      );
    } finally {
      clearInterval(dripping);
    }
    // The server's idle and header timeouts (10 s), checked every second.
    expect(Math.max(...openFor)).toBeLessThan(15_000);
    await expectAliveUnderBound("1,100 one-byte sockets");
  }, 60_000);
});
