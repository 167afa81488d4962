import { Command } from "commander";
import { assignBillingAccount, listQuarantined } from "../books/quarantine.js";
import { redisSetting } from "../platform/connection-log.js";
import { settingsOrExit } from "../platform/process.js";
import {
  act,
  EXIT_OK,
  EXIT_PROBLEM,
  idArgument,
  MAX_POSTGRES_BIGINT,
  type OutputOptions,
  positiveInteger,
  printer,
  usageError,
  withDatabase,
  withQueue,
} from "./context.js";
import { progress, table, terminalSafe, truncate } from "./output.js";
import { type ReplayReport, replayQuarantined } from "./replay-quarantine.js";

// Long enough for a worker to charge a few thousand events; an hour at most.
const DEFAULT_REPLAY_WAIT_SECONDS = 60;
const MAX_REPLAY_WAIT_SECONDS = 3600;

const listCommand = act(
  new Command("list")
    .description("refused items not yet replayed")
    .option("--reason <reason>", "only items refused for this reason")
    .option("--all", "replayed items too"),
  async (flags: OutputOptions & { reason?: string; all?: boolean }) => {
    const print = printer(flags);
    return withDatabase(settingsOrExit(["database"]), async ({ pool }) => {
      const rows = await listQuarantined(pool, { reason: flags.reason, limit: 1000, includeReplayed: flags.all });
      print(
        rows,
        rows.length === 0
          ? "quarantine is empty"
          : table(
              ["id", "quarantined at", "stage", "reason", "idempotency key", "state"],
              rows.map((row) => [
                row.id,
                row.createdAt.toISOString(),
                row.stage,
                row.reason,
                truncate(row.idempotencyKey ?? "-", 48),
                row.replayedAt ? "replayed" : "pending",
              ]),
            ),
      );
      return EXIT_OK;
    });
  },
);

const assignCommand = act(
  new Command("assign")
    .description("bill a no_billing_account item to an account (then replay it)")
    .argument("<id>", "the quarantined item's id (quarantine list)")
    .argument("<account>", "the billing account to charge"),
  async (idText: string, accountText: string, flags: OutputOptions) => {
    const print = printer(flags);
    const id = positiveInteger(idText, MAX_POSTGRES_BIGINT)?.toString();
    if (id === undefined) return usageError(`quarantine assign: id must be a whole number from 1 to ${MAX_POSTGRES_BIGINT}`);
    const account = idArgument("quarantine assign", "account", accountText);
    return withDatabase(settingsOrExit(["database"]), async ({ pool }) => {
      const assigned = await assignBillingAccount(pool, id, account);
      print(
        { assigned, id, billing_account_id: account },
        assigned ? `item ${id} will be billed to ${terminalSafe(account)} when replayed` : `no pending no_billing_account item ${id}`,
      );
      return assigned ? EXIT_OK : EXIT_PROBLEM;
    });
  },
);

const replayCommand = act(
  new Command("replay")
    .description("send refused items back through the pipeline and count what became of each (a receipt_conflict whose call is charged with other usage stays)")
    .option("--reason <reason>", "only items refused for this reason")
    .option("--wait <seconds>", `how long to wait for them to be charged, 0 to ${MAX_REPLAY_WAIT_SECONDS}`, String(DEFAULT_REPLAY_WAIT_SECONDS)),
  async (flags: OutputOptions & { reason?: string; wait: string }) => {
    const print = printer(flags);
    const waitText = flags.wait ?? String(DEFAULT_REPLAY_WAIT_SECONDS);
    if (!/^\d{1,4}$/.test(waitText) || Number(waitText) > MAX_REPLAY_WAIT_SECONDS) {
      return usageError(`quarantine replay: --wait takes whole seconds from 0 to ${MAX_REPLAY_WAIT_SECONDS}`);
    }
    const { billingAccountFrom, ...settings } = settingsOrExit(["database", "queue", "payer"]);
    try {
      return await withDatabase(settings, ({ pool }) =>
        withQueue(settings, async (queue) => {
          const shown = flags.json ? undefined : progress("replay");
          const run = await replayQuarantined(pool, queue, {
            billingAccountFrom,
            reason: flags.reason,
            waitMs: Number(waitText) * 1000,
            onProgress: (done) => shown?.update(`sent ${done.replayed}, refused before sending ${done.refusedBeforeSending}`),
          });
          shown?.done();
          // Nothing was sent and nothing changed: 1, as for any problem, so a script does not
          // count the items replayed; 2 is kept for command lines that cannot be run.
          if (!run.ran && run.why === "another_replay") {
            process.stderr.write("quarantine replay: another replay is running (it holds the replay lock); nothing was sent\n");
            return EXIT_PROBLEM;
          }
          if (!run.ran) {
            const { setting, redis: where } = redisSetting(settings.redis);
            process.stderr.write(
              `quarantine replay: no worker reads the queue at QUEUE_PREFIX=${terminalSafe(settings.queuePrefix)} ${setting}=${terminalSafe(where)}; nothing was sent and the items stay pending. Start the workers, or run it with the service's QUEUE_PREFIX and ${setting}\n`,
            );
            return EXIT_PROBLEM;
          }
          printReplayReport(run.report, print);
          const { refusedAgain, stillPending, refusedBeforeSending } = run.report;
          return refusedAgain + stillPending + refusedBeforeSending === 0 ? EXIT_OK : EXIT_PROBLEM;
        }),
      );
    } catch (error) {
      // PostgreSQL or Redis failing mid-run: one line, not a stack. What was sent is marked and
      // charged at most once, so replaying again is safe.
      process.stderr.write(`quarantine replay failed: ${terminalSafe((error as Error).message)}\n`);
      return EXIT_PROBLEM;
    }
  },
);

export const quarantineCommand = new Command("quarantine")
  .description("items refused at the door or by a worker, kept for review and replay")
  .addCommand(listCommand)
  .addCommand(assignCommand)
  .addCommand(replayCommand);

function printReplayReport(report: ReplayReport, print: (json: unknown, human: string) => void): void {
  const refusals = report.refusals.map(
    (refusal) => `  item ${refusal.id} (${terminalSafe(refusal.idempotencyKey ?? "no key")}): ${terminalSafe(refusal.reason)} ${terminalSafe(JSON.stringify(refusal.issues))}`,
  );
  const human = [
    `sent ${report.replayed} item(s): ${report.charged} charged, ${report.alreadyCharged} already charged, ${report.refusedAgain} refused again, ${report.uncharged} not charged (failed calls), ${report.stillPending} still pending`,
    `${report.refusedBeforeSending} refused before sending${refusals.length < report.refusedBeforeSending ? ` (the first ${refusals.length} listed)` : ""}`,
    ...refusals,
  ].join("\n");
  print(report, human);
}
