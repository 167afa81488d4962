import { InvalidSettingError } from "./config.js";

/**
 * What stops a process before it serves, as the one line it prints. The exit code is for a
 * supervisor: 2 when the configuration must change and a restart cannot help, 1 when a restart
 * may succeed (PostgreSQL not answering yet).
 */
export class StartFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
    this.name = "StartFailure";
  }
}

/**
 * Stops the process with one line on stderr (one per bad setting), never a stack trace:
 * operators read it in journald or pm2 as it is.
 */
export function exitOnStartFailure(error: unknown): never {
  const [lines, exitCode] =
    error instanceof StartFailure
      ? [[error.message], error.exitCode]
      : error instanceof InvalidSettingError
        ? [error.lines, 2]
        : [[`start failed: ${error instanceof Error ? error.message : String(error)}`], 1];
  process.stderr.write(lines.map((line) => `spend-ingest: ${line.replace(/\s*\n\s*/g, " ")}\n`).join(""));
  process.exit(exitCode);
}
