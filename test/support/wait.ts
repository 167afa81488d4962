import type { Queue } from "bullmq";

/** The one wait of the tests, the fault suite and the bench: polls until `condition` holds, or throws after `timeoutMs`. */
export async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Until the queue holds no waiting, active, delayed or prioritized job. */
export async function waitUntilDrained(queue: Queue, timeoutMs: number): Promise<void> {
  await waitFor(async () => {
    const counts = await queue.getJobCounts("waiting", "active", "delayed", "prioritized");
    return Object.values(counts).every((count) => count === 0);
  }, timeoutMs);
}
