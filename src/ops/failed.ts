import { Command } from "commander";
import { settingsOrExit } from "../platform/process.js";
import { act, EXIT_OK, EXIT_PROBLEM, type OutputOptions, printer, usageError, withQueue } from "./context.js";
import { table, truncate } from "./output.js";

export const failedCommand = act(
  new Command("failed").description("failed jobs with their reasons (newest first); exit 1 when there are any").option("--limit <n>", "how many to list", "50"),
  async (flags: OutputOptions & { limit: string }) => {
    const print = printer(flags);
    const limit = Number(flags.limit ?? 50);
    if (!Number.isInteger(limit) || limit < 1) return usageError("--limit takes a positive whole number");
    return withQueue(settingsOrExit(["queue"]), async (queue) => {
      const jobs = await queue.getJobs(["failed"], 0, limit - 1, false);
      const rows = jobs.map((job) => ({
        id: job.id ?? "",
        name: job.name,
        attempts: job.attemptsMade,
        failed_at: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
        reason: job.failedReason,
      }));
      print(
        rows,
        rows.length === 0
          ? "no failed jobs"
          : table(
              ["id", "name", "attempts", "failed at", "reason"],
              rows.map((row) => [truncate(row.id, 24), row.name, row.attempts, row.failed_at ?? "-", truncate(row.reason, 80)]),
            ),
      );
      return rows.length === 0 ? EXIT_OK : EXIT_PROBLEM;
    });
  },
);
