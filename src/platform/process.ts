import type { Logger } from "pino";
import { parseSettings, type ServiceSettings, type SettingGroup, type SettingsOf } from "./config.js";
import { isDatabaseUnavailable } from "./db/client.js";
import { runMigrations } from "./db/migrate.js";
import { closeDeps, createDeps, type Deps, firstConnectionSettled } from "./deps.js";
import { exitOnStartFailure, StartFailure } from "./start-failure.js";

/** Reads the settings of `groups` (a role's, or an ops command's), or prints a line for each problem and exits 2. */
export function settingsOrExit<G extends SettingGroup>(groups: readonly G[], source: NodeJS.ProcessEnv = process.env): SettingsOf<G> {
  try {
    return parseSettings(groups, source);
  } catch (error) {
    exitOnStartFailure(error);
  }
}

/**
 * A service entry point, given its role's settings: `start` returns its parts in the order they
 * stop on SIGTERM. Whatever fails on the way stops the process with one line.
 */
export async function runService<S extends ServiceSettings>(settings: S, start: (deps: Deps<S>) => Promise<Stoppable[]>): Promise<void> {
  const deps = createDeps(settings);
  // So that a Redis refusing REDIS_URL's database stops the process before it says it started.
  await firstConnectionSettled(deps.redis);
  try {
    stopOnSignal(deps, await start(deps));
  } catch (error) {
    exitOnStartFailure(error);
  }
}

/** Applies pending migrations; a failure becomes the StartFailure that names its cause. */
export async function migrateAtStart(databaseUrl: string): Promise<void> {
  try {
    await runMigrations(databaseUrl);
  } catch (error) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    // Authentication refused (28xxx) or no such database (3D000): DATABASE_URL is wrong.
    if (typeof code === "string" && (code.startsWith("28") || code === "3D000")) {
      throw new StartFailure(`invalid setting DATABASE_URL: ${String(message)}`, 2);
    }
    if (isDatabaseUnavailable(error)) {
      throw new StartFailure(`PostgreSQL at DATABASE_URL did not answer (${String(message)}); no migration applied`, 1);
    }
    throw new StartFailure(`migrations failed: ${String(message)}`, 1);
  }
}

export type Stoppable = { name: string; stop: () => Promise<void> };

/** Stops each part after the one before it has stopped. */
export async function stopInOrder(parts: readonly Stoppable[]): Promise<void> {
  for (const part of parts) await part.stop();
}

/**
 * Stops in order on SIGTERM or SIGINT: HTTP first, then workers finish the jobs in hand,
 * then queues, Redis and the pool. A shutdown that overruns its budget exits non-zero.
 */
function stopOnSignal(deps: Deps<ServiceSettings>, parts: Stoppable[]): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const logger: Logger = deps.logger;
    logger.info({ signal }, "shutting down");
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs: deps.settings.shutdownTimeoutMs }, "shutdown timed out");
      process.exit(1);
    }, deps.settings.shutdownTimeoutMs);
    deadline.unref();
    try {
      await stopInOrder(parts);
      await closeDeps(deps);
      logger.info("shut down");
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, "shutdown failed");
      process.exit(1);
    }
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}
