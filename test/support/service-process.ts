import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { freePort } from "./ports.js";
import { waitFor } from "./wait.js";

/** A role's entry point in the build (dist/bin/<entry>.js). */
export type ServiceEntry = "receiver" | "usage-worker" | "all-in-one" | "dev";

/**
 * One service process of the build, for the suite, the fault suite and the bench alike: run by
 * node itself as the npm scripts and the container run it (so signals reach it), its stdout and
 * stderr kept as lines. `start` gives it a free port of its own (a receiver's PORT, a worker's
 * METRICS_PORT) and waits until it answers /healthz; `spawn` only runs it, for a process
 * expected to fail or to name its own address (`listeningAt`).
 */
export class ServiceProcess {
  readonly lines: string[];
  /** stderr's lines alone. */
  readonly errors: string[] = [];
  private running: ChildProcess | undefined;
  private port = 0;
  private listening: Promise<string> | undefined;

  constructor(
    readonly entry: ServiceEntry,
    private readonly env: Record<string, string>,
    private readonly options: { nodeArgs?: string[]; lines?: string[]; openFileLimit?: number } = {},
  ) {
    this.lines = options.lines ?? [];
  }

  get child(): ChildProcess {
    if (!this.running) throw new Error(`${this.entry} was not started`);
    return this.running;
  }

  get pid(): number | undefined {
    return this.running?.pid;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The address the process logs once it listens (with PORT=0, the one the system gave it). */
  get listeningAt(): Promise<string> {
    if (!this.listening) throw new Error(`${this.entry} was not spawned`);
    return this.listening;
  }

  spawn(extraEnv: Record<string, string> = {}): this {
    const node = [process.execPath, ...(this.options.nodeArgs ?? []), `dist/bin/${this.entry}.js`];
    // prlimit (util-linux) sets the soft and hard limit and execs node: the child's pid is node's.
    const command = this.options.openFileLimit === undefined ? node : ["prlimit", `--nofile=${this.options.openFileLimit}:${this.options.openFileLimit}`, ...node];
    const child = spawn(command[0]!, command.slice(1), {
      env: { PATH: process.env.PATH, ...this.env, ...extraEnv },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.running = child;
    this.listening = new Promise<string>((resolve, reject) => {
      const keep = (fromStderr: boolean) => {
        let partial = "";
        return (chunk: Buffer) => {
          const complete = (partial + String(chunk)).split("\n");
          partial = complete.pop() ?? "";
          for (const line of complete.filter(Boolean)) {
            this.lines.push(line);
            if (fromStderr) this.errors.push(line);
            const address = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
            if (address) resolve(address[1]!);
          }
        };
      };
      child.stdout!.on("data", keep(false));
      child.stderr!.on("data", keep(true));
      child.on("exit", (code) => reject(new Error(`${this.entry} exited ${code}: ${this.lines.slice(-5).join("\n")}`)));
    });
    // A process expected to fail never listens; its promise must not count as unhandled.
    this.listening.catch(() => {});
    return this;
  }

  async start(): Promise<this> {
    this.port = await freePort();
    this.spawn({ [this.entry === "usage-worker" ? "METRICS_PORT" : "PORT"]: String(this.port) });
    const child = this.child;
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`${this.entry} exited ${child.exitCode}: ${this.lines.slice(-5).join("\n")}`);
      return fetch(`${this.url}/healthz`).then((response) => response.ok, () => false);
    }, 30_000);
    return this;
  }

  /** Sends a signal without waiting: SIGSTOP freezes the process, SIGCONT wakes it. */
  signal(signal: NodeJS.Signals): void {
    if (this.running && this.running.exitCode === null && this.running.signalCode === null) this.running.kill(signal);
  }

  /** Stops it and waits for the exit; one that will not stop within 15 s is killed. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.running;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    // A stopped process cannot act on SIGTERM.
    child.kill("SIGCONT");
    child.kill(signal);
    const deadline = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(deadline);
  }
}

/** `new ServiceProcess(entry, env).spawn()`, for tests that read its output and its address. */
export function startServiceProcess(
  entry: ServiceEntry,
  env: Record<string, string>,
  nodeArgs: string[] = [],
  options: { openFileLimit?: number } = {},
): ServiceProcess {
  return new ServiceProcess(entry, env, { nodeArgs, ...options }).spawn();
}

/** The TCP ports a process listens on (listeningAddresses), each once. */
export function listeningPorts(pid: number): number[] {
  return [...new Set(listeningAddresses(pid).map((listener) => listener.port))].sort((a, b) => a - b);
}

/**
 * The addresses a process listens on: its own sockets (by inode, from /proc/<pid>/fd) that the
 * kernel's tables (/proc/<pid>/net/tcp, tcp6: the whole network namespace) list as LISTEN.
 * `address` as the kernel has it, IPv6 fully written out (`0000:…:0001`).
 */
export function listeningAddresses(pid: number): { address: string; port: number }[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const socket = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (socket) inodes.add(socket[1]!);
    } catch {
      // Closed between the listing and the read.
    }
  }
  const LISTEN = "0A";
  const listeners: { address: string; port: number }[] = [];
  for (const table of ["tcp", "tcp6"]) {
    for (const row of readFileSync(`/proc/${pid}/net/${table}`, "utf8").trim().split("\n").slice(1)) {
      const [, local, , state, , , , , , inode] = row.trim().split(/\s+/);
      if (state !== LISTEN || !inodes.has(inode!)) continue;
      const [hex, port] = local!.split(":");
      listeners.push({ address: kernelAddress(hex!), port: Number.parseInt(port!, 16) });
    }
  }
  return listeners;
}

/** /proc/net/tcp's address: 32-bit words in the host's (little-endian) byte order. */
function kernelAddress(hex: string): string {
  const words = hex.match(/.{8}/g)!.map((word) => word.match(/../g)!.reverse().join(""));
  if (words.length === 1) return words[0]!.match(/../g)!.map((byte) => Number.parseInt(byte, 16)).join(".");
  return words.join("").match(/.{4}/g)!.join(":");
}

/** The process's peak resident set so far (Linux VmHWM), in MiB. */
export function peakRssMib(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmHWM for process ${pid}`);
  return Number(match[1]) / 1024;
}
