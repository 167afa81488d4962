import { Command, CommanderError } from "commander";
import { booksCommand } from "./books.js";
import { debitCommand } from "./debit.js";
import { EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, UsageError } from "./context.js";
import { enforcementCommand } from "./enforcement.js";
import { failedCommand } from "./failed.js";
import { gatewayCommand } from "./gateway.js";
import { grantCommand } from "./grant.js";
import { terminalSafe, terminalSafeLines } from "./output.js";
import { priceCommand } from "./price.js";
import { quarantineCommand } from "./quarantine.js";
import { queuesCommand } from "./queues.js";
import { reconcileCommand } from "./reconcile.js";
import { retryFailedCommand } from "./retry-failed.js";
import { reverseCommand } from "./reverse.js";
import { transferCommand } from "./transfer.js";
import { usageCommand } from "./usage.js";

/** Every ops command, as `--help` lists them. docs/reference/cli.md has a section for each, checked by a test. */
export const OPS_COMMANDS = [
  queuesCommand,
  failedCommand,
  retryFailedCommand,
  reconcileCommand,
  usageCommand,
  booksCommand,
  grantCommand,
  debitCommand,
  transferCommand,
  reverseCommand,
  quarantineCommand,
  priceCommand,
  gatewayCommand,
  enforcementCommand,
];

/**
 * The operator CLI: `npm run ops -- <command> [options]`, `--help` on any command. Exit codes:
 * 0 ok, 1 a problem found (drift, failed jobs, refusals), 2 a command line that cannot run.
 */
export async function runOps(argv: string[]): Promise<number> {
  const program = new Command("npm run ops --")
    .description("spend-ingest's operator commands; each takes --json and --help")
    .addHelpText("after", "\nexit codes: 0 ok, 1 a problem found, 2 bad usage");
  for (const command of OPS_COMMANDS) program.addCommand(command);
  // Every command and subcommand: usage errors exit 2, help 0, and what reaches the terminal
  // (an unknown command echoes the operator's input) is escaped.
  const configure = (command: Command) => {
    command
      .exitOverride()
      .showHelpAfterError("(add --help for usage)")
      .configureOutput({ writeErr: (text) => process.stderr.write(terminalSafeLines(text)), writeOut: (text) => process.stdout.write(text) });
    for (const child of command.commands) configure(child);
  };
  configure(program);
  if (argv.length === 0) {
    program.outputHelp({ error: true });
    return EXIT_USAGE;
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    return Number(process.exitCode ?? EXIT_OK);
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.code === "commander.helpDisplayed" || error.code === "commander.version" ? EXIT_OK : EXIT_USAGE;
    }
    if (error instanceof UsageError) {
      process.stderr.write(`${terminalSafe(error.message)}\n(add --help for usage)\n`);
      return EXIT_USAGE;
    }
    // PostgreSQL or Redis failing mid-command: one line, not a stack.
    process.stderr.write(`spend-ingest: ${terminalSafe(error instanceof Error ? error.message : String(error))}\n`);
    return EXIT_PROBLEM;
  }
}
