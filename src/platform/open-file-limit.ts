import { readFileSync } from "node:fs";

/**
 * The process's own limit on open file descriptors (the soft RLIMIT_NOFILE, `ulimit -n`), or
 * undefined where it cannot be read or is unlimited. Node has no getrlimit; on Linux the kernel
 * states the limits of the very process in /proc/self/limits, read here once, without a child
 * process (a shell's `ulimit -n` would cost a fork, need /bin/sh in the image, and only report
 * what it inherited). Read after Node's start, which raises the soft limit to the hard one.
 */
export function readOpenFileLimit(limitsFile = "/proc/self/limits"): number | undefined {
  let text: string;
  try {
    text = readFileSync(limitsFile, "utf8");
  } catch {
    // Not Linux, or /proc not mounted: the limit is not known.
    return undefined;
  }
  return openFileLimitIn(text);
}

/** The soft limit of the `Max open files` row: `Max open files  1024  4096  files`. */
export function openFileLimitIn(limitsText: string): number | undefined {
  const soft = /^Max open files\s+(\S+)\s+\S+\s+files\s*$/m.exec(limitsText)?.[1];
  if (soft === undefined || !/^\d+$/.test(soft)) return undefined;
  return Number(soft);
}
