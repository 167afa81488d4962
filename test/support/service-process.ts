import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";

export type ServiceProcess = { child: ChildProcess; lines: string[]; baseUrl: Promise<string> };

/**
 * A service entry point from the build, run by node itself as the npm scripts and the
 * container run it (so signals reach it); `baseUrl` resolves once it logs its address.
 */
export function startServiceProcess(entry: string, env: Record<string, string>, nodeArgs: string[] = []): ServiceProcess {
  const child = spawn(process.execPath, [...nodeArgs, `dist/workers/${entry}.js`], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const baseUrl = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      for (const line of String(chunk).split("\n").filter(Boolean)) {
        lines.push(line);
        const address = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (address) resolve(address[1]!);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => reject(new Error(`exited ${code}: ${lines.join("\n")}`)));
  });
  // A process expected to fail never listens; its promise must not count as unhandled.
  baseUrl.catch(() => {});
  return { child, lines, baseUrl };
}

/** The process's peak resident set so far (Linux VmHWM), in MiB. */
export function peakRssMib(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmHWM for process ${pid}`);
  return Number(match[1]) / 1024;
}
