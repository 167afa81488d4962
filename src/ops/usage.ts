import { Command } from "commander";
import { settingsOrExit } from "../platform/process.js";
import { rebuildUsage } from "../books/usage-rollup.js";
import { act, EXIT_OK, type OutputOptions, printer, withDatabase } from "./context.js";
import { progress } from "./output.js";

const rebuildCommand = act(
  new Command("rebuild").description(
    "recompute usage_hourly from the receipts, one account at a time under its lock: safe while workers charge (after an upgrade, or when reconcile reports usage_rollup_mismatch)",
  ),
  async (flags: OutputOptions) => {
    const print = printer(flags);
    return withDatabase(settingsOrExit(["database"]), async ({ pool }) => {
      const shown = flags.json ? undefined : progress("usage rebuild");
      const rebuilt = await rebuildUsage(pool, { onProgress: (accounts) => shown?.update(`${accounts} accounts rebuilt`) });
      shown?.done();
      const stray = rebuilt.strayRows === 0 ? "" : `; ${rebuilt.strayRows} row(s) of accounts that do not exist dropped`;
      print(rebuilt, `rebuilt ${rebuilt.rows} usage row(s) of ${rebuilt.accounts} account(s)${stray}`);
      return EXIT_OK;
    });
  },
);

export const usageCommand = new Command("usage").description("the usage rollups (usage_hourly)").addCommand(rebuildCommand);
