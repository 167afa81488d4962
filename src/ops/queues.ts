import { Command } from "commander";
import { settingsOrExit } from "../platform/process.js";
import { act, EXIT_OK, type OutputOptions, printer, withQueue } from "./context.js";
import { table } from "./output.js";

export const queuesCommand = act(new Command("queues").description("job counts by state"), async (flags: OutputOptions) => {
  const print = printer(flags);
  return withQueue(settingsOrExit(["queue"]), async (queue) => {
    const counts = await queue.getJobCounts("waiting", "active", "delayed", "prioritized", "completed", "failed");
    print(
      { [queue.name]: counts },
      table(
        ["queue", "state", "jobs"],
        Object.entries(counts).map(([state, count]) => [queue.name, state, count]),
      ),
    );
    return EXIT_OK;
  });
});
