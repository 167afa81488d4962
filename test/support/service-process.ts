import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** `lines`: stdout and stderr as they came; `errors`: stderr's alone. */
export type ServiceProcess = { child: ChildProcess; lines: string[]; errors: string[]; baseUrl: Promise<string> };

/**
 * A service entry point from the build, run by node itself as the npm scripts and the
 * container run it (so signals reach it); `baseUrl` resolves once it logs its address.
 */
export function startServiceProcess(entry: string, env: Record<string, string>, nodeArgs: string[] = []): ServiceProcess {
  const child = spawn(process.execPath, [...nodeArgs, `dist/bin/${entry}.js`], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const errors: string[] = [];
  const baseUrl = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer, fromStderr: boolean) => {
      for (const line of String(chunk).split("\n").filter(Boolean)) {
        lines.push(line);
        if (fromStderr) errors.push(line);
        const address = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (address) resolve(address[1]!);
      }
    };
    child.stdout!.on("data", (chunk: Buffer) => onData(chunk, false));
    child.stderr!.on("data", (chunk: Buffer) => onData(chunk, true));
    child.on("exit", (code) => reject(new Error(`exited ${code}: ${lines.join("\n")}`)));
  });
  // A process expected to fail never listens; its promise must not count as unhandled.
  baseUrl.catch(() => {});
  return { child, lines, errors, baseUrl };
}

/**
 * The TCP ports a process listens on: its own sockets (by inode, from /proc/<pid>/fd) that the
 * kernel's tables (/proc/<pid>/net/tcp, tcp6: the whole network namespace) list as LISTEN.
 */
export function listeningPorts(pid: number): number[] {
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
  const ports = new Set<number>();
  for (const table of ["tcp", "tcp6"]) {
    for (const row of readFileSync(`/proc/${pid}/net/${table}`, "utf8").trim().split("\n").slice(1)) {
      const [, local, , state, , , , , , inode] = row.trim().split(/\s+/);
      if (state === LISTEN && inodes.has(inode!)) ports.add(Number.parseInt(local!.split(":")[1]!, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/** The process's peak resident set so far (Linux VmHWM), in MiB. */
export function peakRssMib(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmHWM for process ${pid}`);
  return Number(match[1]) / 1024;
}
