import type { Logger } from "pino";
import { redactedUrl, type RedisTarget } from "./config.js";

/** While Redis stays away, its warning is written at most this often; the first at once. */
const OUTAGE_LINE_INTERVAL_MS = 60_000;

/** The setting that points at Redis and its value, fit to print. */
export function redisSetting(target: RedisTarget): { setting: "REDIS_URL" | "REDIS_CLUSTER_NODES"; redis: string } {
  return "url" in target
    ? { setting: "REDIS_URL", redis: redactedUrl(target.url) }
    : { setting: "REDIS_CLUSTER_NODES", redis: target.clusterNodes.map((node) => `${node.host}:${node.port}`).join(",") };
}

/**
 * A failure to reach Redis, as ioredis and BullMQ report it: a socket that could not be opened or
 * was lost (each carries its syscall: connect ECONNREFUSED, getaddrinfo ENOTFOUND, read
 * ECONNRESET, connect ETIMEDOUT), a connection closed under a command, a cluster none of whose
 * nodes answers, or credentials refused at each reconnect.
 */
export function isRedisConnectionError(error: Error): boolean {
  if ((error as NodeJS.ErrnoException).syscall !== undefined) return true;
  return error.name === "ClusterAllFailedError" || /^(Connection is closed|WRONGPASS|NOAUTH)/.test(error.message);
}

export type RedisOutageLog = {
  /** An `error` listener: a failure to reach Redis counts toward the outage line; any other error is logged as `message`. */
  listener: (message: string, level?: "warn" | "error") => (error: Error) => void;
  /** Redis answers (a connection is ready): an outage that was reported is reported over. */
  connected: () => void;
};

/**
 * While Redis is away every connection (the commands', the queue's, a worker's two) reports each
 * reconnect that fails: several errors a second. They become one warning that names the setting
 * pointing at Redis, credentials redacted and no stack, written at once and then at most once a
 * minute with the count since the last; each failure alone is written at debug. One line says
 * when Redis answers again.
 */
export function createRedisOutageLog(logger: Logger, target: RedisTarget): RedisOutageLog {
  const where = redisSetting(target);
  let downSince: number | undefined;
  let lastLineAt = 0;
  let unreported = 0;
  const failed = (error: Error) => {
    logger.debug({ ...where, error: error.message }, "redis connection failed");
    const now = Date.now();
    const begins = downSince === undefined;
    downSince ??= now;
    unreported += 1;
    if (!begins && now - lastLineAt < OUTAGE_LINE_INTERVAL_MS) return;
    logger.warn({ ...where, error: error.message, failures: unreported, downForMs: now - downSince }, `Redis at ${where.setting} does not answer; retrying`);
    lastLineAt = now;
    unreported = 0;
  };
  return {
    listener: (message, level = "warn") => (error) => (isRedisConnectionError(error) ? failed(error) : logger[level]({ err: error }, message)),
    connected: () => {
      if (downSince === undefined) return;
      logger.info({ ...where, downForMs: Date.now() - downSince }, `Redis at ${where.setting} answers again`);
      downSince = undefined;
      unreported = 0;
    },
  };
}
