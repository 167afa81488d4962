import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUsageQueue } from "../../src/platform/queue-producer.js";
import { litellmPayload } from "../support/litellm-payloads.js";
import { type ServiceProcess, startServiceProcess } from "../support/service-process.js";
import { waitFor } from "../support/wait.js";
import { ADMIN_DATABASE_URL, ADMIN_TOKEN, INGEST_TOKEN, TEST_REDIS_URL } from "../support/test-env.js";

// A hard limit of 256 descriptors, as a host's `nofile` may set it: with MAX_CONNECTIONS at its
// default (1,000), idle sockets would take every descriptor long before the cap evicted one.
const OPEN_FILE_LIMIT = 256;
const FLOOD = 400;

const RECEIVER_NODE_ARGS = JSON.parse(readFileSync("package.json", "utf8"))
  .scripts["start:receiver"].split(" ")
  .filter((word: string) => word.startsWith("--"));

const LOWERED = "MAX_CONNECTIONS lowered to fit the file-descriptor limit; raise ulimit -n to hold more";

const prefix = `spend_ingest_fd_${randomBytes(6).toString("hex")}`;
let receiver: ServiceProcess;
let baseUrl: string;

beforeAll(async () => {
  receiver = startServiceProcess(
    "receiver",
    { DATABASE_URL: ADMIN_DATABASE_URL, REDIS_URL: TEST_REDIS_URL, INGEST_TOKENS: INGEST_TOKEN, ADMIN_TOKEN, PORT: "0", QUEUE_PREFIX: prefix },
    RECEIVER_NODE_ARGS,
    { openFileLimit: OPEN_FILE_LIMIT },
  );
  baseUrl = await receiver.listeningAt;
  // Its start line and the warning after it come after Fastify's "listening" line, maybe in later chunks of its output.
  await waitFor(() => logLine("receiver started") !== undefined && logLine(LOWERED) !== undefined);
});

afterAll(async () => {
  await receiver?.kill();
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  const queue = createUsageQueue(redis, prefix);
  await queue.obliterate({ force: true });
  await queue.close();
  await redis.quit();
});

const logLine = (msg: string) =>
  receiver.lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === msg);

async function closedAtCap(): Promise<{ evicted: number; refused: number }> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const count = (action: string) => Number(new RegExp(`^spend_ingest_connections_closed_at_cap_total\\{action="${action}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  return { evicted: count("evicted"), refused: count("refused") };
}

describe("a receiver under a low file-descriptor limit (real process under prlimit)", () => {
  it("holds fewer connections than its descriptors allow, says so at start, and serves a newcomer past a flood of idle sockets", async () => {
    const cap = OPEN_FILE_LIMIT - 128;
    expect(logLine("receiver started")).toMatchObject({ nofileLimit: OPEN_FILE_LIMIT, maxConnections: cap, descriptorReserve: 128 });
    expect(logLine(LOWERED)).toMatchObject({
      level: 40,
      setting: "MAX_CONNECTIONS",
      configured: 1000,
      maxConnections: cap,
    });

    // Silent sockets, more than the process has descriptors for.
    const sockets: Socket[] = [];
    let closed = 0;
    for (let index = 0; index < FLOOD; index++) {
      const socket = connect(Number(new URL(baseUrl).port), "127.0.0.1");
      socket.on("error", () => {});
      socket.on("close", () => (closed += 1));
      sockets.push(socket);
    }
    try {
      // Every socket past the cap is closed by the server at once, not reset for want of a descriptor.
      await waitFor(() => closed >= FLOOD - cap && sockets.every((socket) => !socket.connecting || socket.destroyed));
      // A newcomer replaces only a connection at least a second old (connection-limit.ts).
      await new Promise((resolve) => setTimeout(resolve, 1_100));

      // A new caller is served, and the receiver still reaches PostgreSQL and Redis: the reserve held.
      expect((await fetch(`${baseUrl}/readyz`)).status).toBe(200);
      const posted = await fetch(`${baseUrl}/v1/callbacks/litellm`, {
        method: "POST",
        headers: { authorization: `Bearer ${INGEST_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify([litellmPayload("fd-headroom-1", "team-fd")]),
      });
      expect(posted.status).toBe(202);
      // The cap, not the kernel, closed the flood's surplus; and newcomers took idle sockets' places.
      const counts = await closedAtCap();
      expect(counts.refused + counts.evicted).toBeGreaterThanOrEqual(FLOOD - cap);
      expect(counts.evicted).toBeGreaterThanOrEqual(1);
      console.log(`${FLOOD} idle sockets against nofile ${OPEN_FILE_LIMIT}, cap ${cap}: closed at the cap ${JSON.stringify(counts)}`);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
    expect(receiver.child.exitCode).toBeNull();
  }, 60_000);
});
