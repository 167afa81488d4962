import type { Stoppable } from "../platform/process.js";

export type PeriodicTask = {
  name: string;
  everyMs: number;
  /** Run once at start too, not only after the first interval. */
  runAtStart: boolean;
  /** One run; `stopping()` turns true when a stop is asked, for a run of many steps to end early. */
  run: (stopping: () => boolean) => Promise<void>;
  /** A run's failure, after it ended (`stopping`: while a stop was asked); the next tick tries again. */
  onFailure: (error: unknown, stopping: boolean) => void | Promise<void>;
  /** Called when a stop is asked, before the run in hand is waited for: to cut a run that would wait long. */
  onStop?: () => Promise<void>;
};

/**
 * Runs a task every `everyMs` in the background (the timer never holds the process open), one
 * run at a time: a run that outlasts the interval makes the next tick skip, not queue behind it.
 * Stopping clears the timer and waits for the run in hand.
 */
export function startPeriodicTask(task: PeriodicTask): Stoppable {
  let running: Promise<void> | null = null;
  let stopping = false;
  const tick = () => {
    running ??= task
      .run(() => stopping)
      .catch((error) => task.onFailure(error, stopping))
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(tick, task.everyMs);
  timer.unref();
  if (task.runAtStart) tick();
  return {
    name: task.name,
    stop: async () => {
      stopping = true;
      clearInterval(timer);
      const cut = task.onStop?.();
      await running;
      await cut;
    },
  };
}
