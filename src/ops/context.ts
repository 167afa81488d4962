import type { Command } from "commander";
import type { SettingsOf } from "../platform/config.js";
import { createDatabase, type Database } from "../platform/db/client.js";
import { createRedis } from "../platform/deps.js";
import { createUsageQueue } from "../platform/queue-producer.js";
import { loadPriceBook, type PriceBook, PriceBookError } from "../pricing/price-book.js";
import { canonicalId } from "../usage/storable-text.js";
import { newFileProblem, terminalSafe, terminalSafeJson, terminalSafeLines, writeNewFile } from "./output.js";

/** What every command shares: exit codes, usage errors, output, and the stores it opens. */

export const EXIT_OK = 0;
export const EXIT_PROBLEM = 1;
export const EXIT_USAGE = 2;

export const MAX_POSTGRES_BIGINT = 2n ** 63n - 1n;

/** A command line that cannot be run: cli.ts prints it with the command's help hint, exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function usageError(message: string): never {
  throw new UsageError(message);
}

/** Every command's --json and --out, which every command takes. */
export type OutputOptions = { json?: boolean; out?: string };

/**
 * Prints `json` under --json, else `human`, on stdout or into the --out file. Every value is
 * escaped where it is interpolated; this is the net for one that was missed.
 */
export function printer(options: OutputOptions): (json: unknown, human: string) => void {
  return (json, human) => {
    const text = `${options.json ? terminalSafeJson(json) : terminalSafeLines(human)}\n`;
    if (options.out === undefined) process.stdout.write(text);
    else writeNewFile(options.out, text);
  };
}

/** A leaf command's action: its exit code becomes the process's. */
export function act<A extends unknown[]>(command: Command, run: (...args: A) => Promise<number>): Command {
  return command
    .option("--json", "machine-readable output")
    // A file of its own, because `npm run` (without -s) writes its banner into a redirected stdout.
    .option("--out <file>", "write the output to this new file instead of stdout (never replaces a file)")
    .action(async (...args: unknown[]) => {
      // Commander passes the arguments, then the options, then the command.
      const { out } = args.at(-2) as OutputOptions;
      // Refused before the command does anything, rather than after a grant has committed.
      const problem = out === undefined ? undefined : newFileProblem(out);
      if (problem !== undefined) usageError(`--out: ${problem}`);
      process.exitCode = await run(...(args as A));
    });
}

/** A positive whole number in plain digits, up to `max`; undefined for anything else. */
export function positiveInteger(text: string, max: bigint): bigint | undefined {
  if (!/^[1-9]\d*$/.test(text)) return undefined;
  const value = BigInt(text);
  return value <= max ? value : undefined;
}

/** An account id or reference from the command line in its canonical form, or a usage error naming it. */
export function idArgument(command: string, argument: string, text: string): string {
  // The command line cannot carry a lone surrogate or other bytes that are not UTF-8: Node
  // hands them over as U+FFFD, and an id quietly made of those would be another id.
  if (text.includes("\uFFFD")) {
    return usageError(`${command}: ${argument} holds U+FFFD (the command line carried bytes that are not UTF-8)`);
  }
  const canonical = canonicalId(text);
  return canonical.ok ? canonical.value : usageError(`${command}: ${argument} ${canonical.message}`);
}

/**
 * Each command reads its settings once, with settingsOrExit(groups) before it opens anything,
 * so that one try lists every setting it lacks; these open what those settings name.
 */
export async function withDatabase<T>(settings: SettingsOf<"database">, work: (database: Database) => Promise<T>): Promise<T> {
  const database = createDatabase(settings.databaseUrl, { max: 2 });
  try {
    return await work(database);
  } finally {
    await database.pool.end();
  }
}

export async function withQueue<T>(settings: SettingsOf<"queue">, work: (queue: ReturnType<typeof createUsageQueue>) => Promise<T>): Promise<T> {
  const redis = createRedis(settings.redis, { forWorker: false });
  const queue = createUsageQueue(redis, settings.queuePrefix);
  // A lost connection fails the command that needed it; the events alone would print stacks.
  redis.on("error", () => {});
  queue.on("error", () => {});
  try {
    return await work(queue);
  } finally {
    // A connection never used (or lost) must not hide the error that ended the command.
    await queue.close().catch(() => {});
    await redis.quit().catch(() => redis.disconnect());
  }
}

/** The price book of PRICING_FILE, or the one line that says why it does not load (exit 1). */
export function priceBookOrExit({ pricingFile }: SettingsOf<"pricing">): PriceBook {
  try {
    return loadPriceBook(pricingFile);
  } catch (error) {
    if (!(error instanceof PriceBookError)) throw error;
    process.stderr.write(`spend-ingest: invalid setting PRICING_FILE: ${terminalSafe(error.message)}\n`);
    process.exit(EXIT_PROBLEM);
  }
}

