import { setImmediate as nextTurn } from "node:timers/promises";
import { afterEach, describe, expect, it, vi } from "vitest";
import { startPeriodicTask } from "../../src/worker/periodic-task.js";

/** A promise the test settles. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

// An interval no test reaches: every run here is the one at start.
const NEVER_MS = 3_600_000;

describe("startPeriodicTask", () => {
  it("runs at start when asked; a stop cuts through onStop, tells the run, and waits for it", async () => {
    const run = gate();
    const events: string[] = [];
    const task = startPeriodicTask({
      name: "test",
      everyMs: NEVER_MS,
      runAtStart: true,
      run: async (stopping) => {
        events.push("run started");
        await run.opened;
        events.push(`run ended, stopping: ${stopping()}`);
      },
      onFailure: () => void events.push("failed"),
      onStop: async () => {
        events.push("cut");
        run.open();
      },
    });
    expect(events).toEqual(["run started"]);
    await task.stop();
    expect(events).toEqual(["run started", "cut", "run ended, stopping: true"]);
  });

  it("hands a failure to onFailure, saying whether a stop was asked", async () => {
    const run = gate();
    const failures: Array<[string, boolean]> = [];
    const task = startPeriodicTask({
      name: "test",
      everyMs: NEVER_MS,
      runAtStart: true,
      run: async () => {
        await run.opened;
        throw new Error("no database");
      },
      onFailure: (error, stopping) => void failures.push([(error as Error).message, stopping]),
    });
    const stopped = task.stop();
    // The stop waits for the run in hand, which has not ended.
    await nextTurn();
    expect(failures).toEqual([]);
    run.open();
    await stopped;
    expect(failures).toEqual([["no database", true]]);
  });

  it("does not run before its first interval unless asked to", async () => {
    let runs = 0;
    const task = startPeriodicTask({
      name: "test",
      everyMs: NEVER_MS,
      runAtStart: false,
      run: async () => void runs++,
      onFailure: () => {},
    });
    await task.stop();
    expect(runs).toBe(0);
  });

  describe("on its interval", () => {
    afterEach(() => vi.useRealTimers());

    it("skips the ticks that come while a run is in hand, rather than queue them", async () => {
      vi.useFakeTimers();
      let run = gate();
      let runs = 0;
      const task = startPeriodicTask({
        name: "test",
        everyMs: 1_000,
        runAtStart: false,
        run: async () => {
          runs++;
          await run.opened;
        },
        onFailure: () => {},
      });
      await vi.advanceTimersByTimeAsync(1_000);
      expect(runs).toBe(1);
      await vi.advanceTimersByTimeAsync(5_000);
      expect(runs).toBe(1);
      run.open();
      run = gate();
      await vi.advanceTimersByTimeAsync(1_000);
      expect(runs).toBe(2);
      run.open();
      await task.stop();
    });
  });
});
