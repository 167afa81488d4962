import { execFileSync } from "node:child_process";
import { chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "../support/ports.js";

/**
 * The fault suite's own PostgreSQL, on its own port and data directory, so that stopping or
 * crashing it never disturbs the machine's.
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
