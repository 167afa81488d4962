import { Command } from "commander";
import { settingsOrExit } from "../platform/process.js";
import { verifyBookHeads } from "../books/book-heads.js";
import { reconcileLedger } from "../books/reconcile-ledger.js";
import { act, EXIT_OK, EXIT_PROBLEM, type OutputOptions, printer, withDatabase } from "./context.js";
import { readHeadsFile } from "./heads-file.js";
import { progress, terminalSafe } from "./output.js";

export const reconcileCommand = act(
  new Command("reconcile")
    .description("check every balance, chain, credit bucket, receipt, grant, debit, transfer and reversal against the ledger (exit 1 on drift)")
    .option("--against <heads.json>", "also check that nothing before the heads in this file (books head --json) changed"),
  async (flags: OutputOptions & { against?: string }) => {
    const print = printer(flags);
    const stored = flags.against === undefined ? undefined : readHeadsFile(flags.against);
    return withDatabase(settingsOrExit(["database"]), async ({ pool }) => {
      const shown = flags.json ? undefined : progress("reconcile");
      const report = await reconcileLedger(pool, { onProgress: (checked) => shown?.update(`${checked} accounts checked`) });
      shown?.done();
      const headDrifts = stored === undefined ? [] : await verifyBookHeads(pool, stored.heads);
      const ok = report.ok && headDrifts.length === 0;
      const drifts = [...report.drifts, ...headDrifts];
      const against = stored === undefined ? "" : `, ${stored.heads.length} heads of ${terminalSafe(stored.takenAt)} unchanged`;
      const human = ok
        ? `ok (${report.accountsChecked} accounts${against})`
        : [`drift found in ${report.accountsChecked} accounts:`, ...drifts.map((drift) => `  ${terminalSafe(JSON.stringify(drift))}`)].join("\n");
      print({ ...report, ok, drifts, headsChecked: stored?.heads.length ?? null }, human);
      return ok ? EXIT_OK : EXIT_PROBLEM;
    });
  },
);
