import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { waitFor } from "../support/harness.js";
import { freePort } from "../support/ports.js";

/**
 * The fault suite's own PostgreSQL, Redis and service processes, on their own ports and data
 * directories, so that stopping or killing them never disturbs the machine's services.
 */

const PG_BIN = (() => {
  const versions = readdirSync("/usr/lib/postgresql").sort();
  return join("/usr/lib/postgresql", versions[versions.length - 1]!, "bin");
})();

// PostgreSQL refuses to run as root; as root (CI), its binaries run as the postgres user.
function asPostgres(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", command, ...args]] : [command, args];
}

export class OwnedPostgres {
  private constructor(
    readonly dataDirectory: string,
    readonly port: number,
  ) {}

  static async start(): Promise<OwnedPostgres> {
    const directory = mkdtempSync(join(tmpdir(), "spend-ingest-pg-"));
    if (process.getuid?.() === 0) chownSync(directory, Number(execFileSync("id", ["-u", "postgres"]).toString().trim()), Number(execFileSync("id", ["-g", "postgres"]).toString().trim()));
    const [command, args] = asPostgres(join(PG_BIN, "initdb"), ["-D", join(directory, "data"), "-A", "trust", "-U", "postgres", "--no-sync"]);
    execFileSync(command, args, { stdio: "ignore" });
    const postgres = new OwnedPostgres(directory, await freePort());
    await postgres.resume();
    return postgres;
  }

  url(database = "postgres"): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  async resume(): Promise<void> {
    const options = `-p ${this.port} -k ${this.dataDirectory} -c listen_addresses=127.0.0.1 -c max_connections=200`;
    const [command, args] = asPostgres(join(PG_BIN, "pg_ctl"), [
      "-D", join(this.dataDirectory, "data"), "-o", options, "-l", join(this.dataDirectory, "log"), "-w", "start",
    ]);
    execFileSync(command, args, { stdio: "ignore" });
  }

  /** `fast` ends sessions and shuts down cleanly; `immediate` is a crash. */
  stop(mode: "fast" | "immediate" = "fast"): void {
    const [command, args] = asPostgres(join(PG_BIN, "pg_ctl"), ["-D", join(this.dataDirectory, "data"), "-m", mode, "-w", "stop"]);
    execFileSync(command, args, { stdio: "ignore" });
  }

  /** Removes the data directory; the server must be stopped. */
  remove(): void {
    rmSync(this.dataDirectory, { recursive: true, force: true });
  }

  async createDatabase(name: string): Promise<string> {
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    await client.query(`CREATE DATABASE ${name}`);
    await client.end();
    return this.url(name);
  }
}

export type ServiceRole = "receiver" | "usage-worker";

/** One receiver or worker process of the build, with its stdout kept for the alert lines. */
export class ServiceProcess {
  readonly lines: string[];
  private child: ChildProcess | undefined;
  private port = 0;

  constructor(
    readonly role: ServiceRole,
    private readonly env: Record<string, string>,
    lines: string[],
  ) {
    this.lines = lines;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    const child = spawn(process.execPath, [`dist/bin/${this.role}.js`], {
      // Each role's own setting: a receiver listens on PORT, a worker serves health on METRICS_PORT.
      env: { PATH: process.env.PATH, ...this.env, [this.role === "receiver" ? "PORT" : "METRICS_PORT"]: String(this.port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    let partial = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      const text = partial + String(chunk);
      const complete = text.split("\n");
      partial = complete.pop() ?? "";
      this.lines.push(...complete.filter(Boolean));
    });
    child.stderr!.on("data", (chunk: Buffer) => this.lines.push(...String(chunk).split("\n").filter(Boolean)));
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`${this.role} exited ${child.exitCode}: ${this.lines.slice(-5).join("\n")}`);
      return fetch(`${this.url}/healthz`).then((response) => response.ok, () => false);
    }, 30_000);
  }

  /** Sends a signal without waiting: SIGSTOP freezes the process, SIGCONT wakes it. */
  signal(signal: NodeJS.Signals): void {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    // A stopped process cannot act on SIGTERM; one that will not stop in time is killed.
    child.kill("SIGCONT");
    child.kill(signal);
    const deadline = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(deadline);
  }
}
