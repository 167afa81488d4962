import { type Job, UnrecoverableError } from "bullmq";
import pino from "pino";
import { describe, expect, it } from "vitest";
import type { WorkerDeps } from "../../src/platform/deps.js";
import { createMetrics } from "../../src/platform/metrics.js";
import { JOB_CHARGE_USAGE } from "../../src/platform/queue.js";
import { createUsageProcessor } from "../../src/worker/usage-processor.js";

// Jobs whose data does not parse fail before any connection is used, so none is given.
function processorWithMetrics() {
  const metrics = createMetrics([]);
  const deps = { metrics, logger: pino({ level: "silent" }), database: {}, settings: {} } as unknown as WorkerDeps;
  const process = createUsageProcessor(deps, () => {
    throw new Error("no price book is read before the data parses");
  });
  const timed = async () =>
    Object.fromEntries(
      (await metrics.jobDuration.get()).values.filter((value) => value.metricName?.endsWith("_count")).map((value) => [value.labels.job, value.value]),
    );
  return { process, timed };
}

const job = (name: string, data: unknown) => ({ id: "1", name, data, attemptsMade: 0 }) as Job;

describe("job duration", () => {
  it("times a job that fails, under its name", async () => {
    const { process, timed } = processorWithMetrics();
    await expect(process(job(JOB_CHARGE_USAGE, { events: "not a list" }))).rejects.toThrow(UnrecoverableError);
    expect((await timed())[JOB_CHARGE_USAGE]).toBe(1);
  });

  it("fails a job of no known name at once, and times it under no label", async () => {
    const { process, timed } = processorWithMetrics();
    await expect(process(job("no-such-job", {}))).rejects.toThrow(/unknown job name no-such-job/);
    expect(Object.keys(await timed())).not.toContain("no-such-job");
  });
});
