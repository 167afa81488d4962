import { Command } from "commander";
import { countsJson, type GatewayReconcileOptions, type GatewayReport, reconcileGateway } from "../gateway/reconcile-spend-log.js";
import { createSpendLogPool, SpendLogError } from "../litellm/spend-log.js";
import { settingsOrExit } from "../platform/process.js";
import { enqueueCallbackItems } from "../platform/queue-producer.js";
import { act, EXIT_OK, EXIT_PROBLEM, type OutputOptions, priceBookOrExit, printer, usageError, withDatabase, withQueue } from "./context.js";
import { progress, table, terminalSafe } from "./output.js";

const reconcileCommand = act(
  new Command("reconcile")
    .description("calls in LiteLLM's spend log never billed, per day, with LiteLLM's spend and the credits they would cost (exit 1 when some are missing)")
    .requiredOption("--since <time>", "from this date or time (UTC unless it says otherwise), e.g. 2026-11-01")
    .option("--until <time>", "to this date or time (default: now)")
    .option("--apply", "bill the missing calls, once, through the queue"),
  async (flags: OutputOptions & { since: string; until?: string; apply?: boolean }) => {
    const print = printer(flags);
    const since = timeArgument("since", flags.since);
    const until = flags.until === undefined ? new Date() : timeArgument("until", flags.until);
    if (until <= since) return usageError("gateway reconcile: --until must be after --since");
    const { litellmDatabaseUrl, billingAccountFrom, ...settings } = settingsOrExit(["database", "queue", "payer", "pricing", "litellmDatabase"]);
    const book = priceBookOrExit(settings);
    const spendLog = createSpendLogPool(litellmDatabaseUrl);
    try {
      return await withDatabase(settings, async ({ pool }) => {
        const compare = async (apply?: GatewayReconcileOptions["apply"]) => {
          const shown = flags.json ? undefined : progress("gateway reconcile");
          const report = await reconcileGateway({
            spendLog,
            pool,
            priceBook: book,
            billingAccountFrom,
            since,
            until,
            apply,
            onProgress: (total) => shown?.update(`${total.litellmCalls} calls read, ${total.missing} missing`),
          });
          shown?.done();
          printGatewayReport(report, print);
          return report.total.missing === 0 ? EXIT_OK : EXIT_PROBLEM;
        };
        // Only billing needs the queue: a report reads the two databases and nothing else.
        return flags.apply ? withQueue(settings, (queue) => compare((missing) => enqueueCallbackItems(queue, missing))) : compare();
      });
    } catch (error) {
      // LiteLLM's database unreachable or unreadable: one line, not a stack.
      if (!(error instanceof SpendLogError)) throw error;
      process.stderr.write(`spend-ingest: LiteLLM's database (LITELLM_DATABASE_URL) cannot be read: ${terminalSafe((error as Error).message)}\n`);
      return EXIT_PROBLEM;
    } finally {
      await spendLog.end();
    }
  },
);

export const gatewayCommand = new Command("gateway").description("LiteLLM's own spend log (LITELLM_DATABASE_URL)").addCommand(reconcileCommand);

/** A time on the command line: an ISO-8601 date or date and time (UTC unless it says otherwise). */
function timeArgument(flag: string, text: string | undefined): Date {
  // A time without a zone is UTC, as the help says, whatever the machine's zone.
  const utc = text === undefined ? "" : /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : /(Z|[+-]\d{2}:?\d{2})$/.test(text) ? text : `${text}Z`;
  const time = text === undefined ? Number.NaN : Date.parse(utc);
  if (Number.isNaN(time)) return usageError(`gateway reconcile: --${flag} takes a date or time such as 2026-11-01 or 2026-11-01T12:00:00Z`);
  return new Date(time);
}

function printGatewayReport(report: GatewayReport, print: (json: unknown, human: string) => void): void {
  const days = [...report.days.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  const json = {
    since: report.since.toISOString(),
    until: report.until.toISOString(),
    days: Object.fromEntries(days.map(([day, counts]) => [day, countsJson(counts)])),
    total: countsJson(report.total),
    receipts_without_litellm_row: report.receiptsWithoutRow,
    applied: report.applied,
  };
  const row = (label: string, counts: GatewayReport["total"]) => {
    const c = countsJson(counts);
    return [label, c.litellm_calls, c.billed, c.quarantined, c.missing, `$${c.missing_spend_usd}`, c.missing_credits, c.missing_unpriced];
  };
  const human = [
    table(
      ["day (UTC)", "in LiteLLM", "billed", "quarantined", "missing", "missing spend", "missing credits", "unpriced"],
      [...days.map(([day, counts]) => row(day, counts)), row("total", report.total)],
    ),
    `${report.receiptsWithoutRow} receipt(s) in the window with no LiteLLM row (LiteLLM writes its log a minute or more late)`,
    report.applied > 0 ? `sent ${report.applied} call(s) to be billed` : report.total.missing > 0 ? "run again with --apply to bill them" : "nothing missing",
  ].join("\n");
  print(json, human);
}
