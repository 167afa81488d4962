import { Command } from "commander";
import { settingsOrExit } from "../platform/process.js";
import { act, EXIT_OK, type OutputOptions, printer, withQueue } from "./context.js";

export const retryFailedCommand = act(
  new Command("retry-failed").description("send every failed job back to be processed (charging is idempotent: nothing is charged twice)"),
  async (flags: OutputOptions) => {
    const print = printer(flags);
    return withQueue(settingsOrExit(["queue"]), async (queue) => {
      const failed = await queue.getFailedCount();
      // Charging is idempotent per call, so a retried job charges nothing twice.
      await queue.retryJobs({ state: "failed", count: 1000 });
      print({ retried: failed }, `retried ${failed} failed job(s)`);
      return EXIT_OK;
    });
  },
);
