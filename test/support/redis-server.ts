import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { waitFor } from "./wait.js";
import { freePort } from "./ports.js";

/**
 * A Redis server a test owns, on its own port and data directory, that the test may kill and
 * start again; with `appendOnly`, it comes back on the same append-only file.
 */
export class TestRedisServer {
  private process: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    private readonly directory: string,
    private readonly appendOnly: boolean,
  ) {}

  static async start(options: { appendOnly?: boolean } = {}): Promise<TestRedisServer> {
    const server = new TestRedisServer(await freePort(), mkdtempSync(join(tmpdir(), "spend-ingest-redis-")), options.appendOnly ?? false);
    await server.restart();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async restart(): Promise<void> {
    const persistence = this.appendOnly ? ["--appendonly", "yes", "--appendfsync", "everysec"] : ["--appendonly", "no"];
    this.process = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.directory, "--save", "", "--maxmemory-policy", "noeviction", ...persistence],
      { stdio: "ignore" },
    );
    await waitFor(async () => {
      const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on("error", () => {}); // refused until the server listens: the loop asks again
      try {
        await probe.connect();
        // Answers only once the append-only file is loaded.
        return (await probe.ping()) === "PONG";
      } catch {
        return false;
      } finally {
        probe.disconnect();
      }
    }, 30_000);
  }

  /** Kills the server and removes its data directory. */
  async remove(): Promise<void> {
    await this.kill();
    rmSync(this.directory, { recursive: true, force: true });
  }

  /** As a crash would: SIGKILL, no shutdown. */
  async kill(): Promise<void> {
    const running = this.process;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await exited;
  }
}
