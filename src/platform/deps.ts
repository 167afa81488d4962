import type { Queue } from "bullmq";
import { Cluster, Redis } from "ioredis";
import { type DestinationStream, type Logger, pino } from "pino";
import { InvalidSettingError, type ReceiverSettings, redactedUrl, type RedisTarget, type ServiceSettings, type Settings, type WorkerSettings } from "./config.js";
import { createRedisOutageLog, type RedisOutageLog } from "./connection-log.js";
import { createDatabase, type Database } from "./db/client.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { createUsageQueue } from "./queue-producer.js";
import { exitOnStartFailure } from "./start-failure.js";

/** `S`: the settings of the process's role (config.ts ROLES); the all-in-one process's by default. */
export type Deps<S extends ServiceSettings = Settings> = {
  settings: S;
  logger: Logger;
  database: Database;
  /** For commands and the producer; workers open their own blocking connection. */
  redis: RedisClient;
  usageQueue: Queue;
  metrics: Metrics;
  /** Where every Redis connection of the process reports its errors (a worker's too). */
  redisOutage: RedisOutageLog;
};
/** What the receiver's routes are given, in a receiver or the all-in-one process. */
export type ReceiverDeps = Deps<ReceiverSettings>;
/** What the usage worker is given, in a worker or the all-in-one process. */
export type WorkerDeps = Deps<WorkerSettings>;

// Bearer tokens arrive only in this header; nothing else that could hold one is logged.
const REDACTED_PATHS = ["req.headers.authorization", "headers.authorization", "authorization", "token"];

export function createLogger(settings: Pick<ServiceSettings, "logLevel">, destination?: DestinationStream): Logger {
  const options = { level: settings.logLevel, redact: { paths: REDACTED_PATHS, censor: "[redacted]" } };
  // Synchronous: an alert is marked delivered right after it is logged, so its line must be
  // out of the process by then. pino's default stdout writes asynchronously, and a crash
  // (SIGKILL) in between would lose a line the outbox already counts as delivered.
  return pino(options, destination ?? pino.destination({ dest: 1, sync: true }));
}

/** One Redis server or a Redis Cluster: BullMQ takes either. */
export type RedisClient = Redis | Cluster;

export function createRedis(target: RedisTarget, options: { forWorker: boolean }): RedisClient {
  const connection = {
    // BullMQ workers block on Redis and must wait out a reconnect rather than fail the command.
    maxRetriesPerRequest: options.forWorker ? null : 2,
    // The receiver answers 503 while Redis is away instead of holding requests in a buffer.
    enableOfflineQueue: options.forWorker,
  };
  if ("url" in target) return stopOnRefusedDatabase(new Redis(target.url, connection), target.url);
  // The cluster's seed nodes; the rest of its topology, and every change of it (a failover), is
  // learnt from the nodes themselves.
  return new Cluster(target.clusterNodes, { enableOfflineQueue: connection.enableOfflineQueue, redisOptions: connection });
}

/**
 * When Redis refuses to SELECT the URL's database index (it has fewer databases), ioredis carries
 * on in database 0, where another deployment's queue may be. The refusal comes while the
 * connection is being set up, before any command of ours is sent on it: the process stops there,
 * whatever its role, as for any other bad setting.
 */
function stopOnRefusedDatabase(client: Redis, url: string): Redis {
  client.on("error", (error: Error & { command?: { name: string; args: unknown[] } }) => {
    if (error.command?.name !== "select") return;
    const detail = `Redis at ${redactedUrl(url)} refused database ${String(error.command.args[0])} (${error.message})`;
    exitOnStartFailure(new InvalidSettingError([{ setting: "REDIS_URL", detail }]));
  });
  return client;
}

// Far longer than a handshake takes; a Redis that has not answered by then is away, and the
// process starts without it as it always has (it answers 503 until Redis is back).
const FIRST_CONNECTION_WAIT_MS = 2_000;

/**
 * Resolves once the client's first connection is set up, has failed, or the wait is over. A Redis
 * that refuses the URL's database has stopped the process by then, so a service that waits for
 * this before serving never serves on the wrong database.
 */
export function firstConnectionSettled(client: RedisClient): Promise<void> {
  if (client.status === "ready") return Promise.resolve();
  return new Promise((resolve) => {
    const settled = () => {
      clearTimeout(timer);
      client.off("ready", settled).off("error", settled);
      resolve();
    };
    const timer = setTimeout(settled, FIRST_CONNECTION_WAIT_MS);
    client.once("ready", settled).once("error", settled);
  });
}

export function createDeps<S extends ServiceSettings>(settings: S, options: { logger?: Logger } = {}): Deps<S> {
  const logger = options.logger ?? createLogger(settings);
  const redisOutage = createRedisOutageLog(logger, settings.redis);
  const redis = createRedis(settings.redis, { forWorker: false });
  redis.on("error", redisOutage.listener("redis connection error"));
  redis.on("ready", redisOutage.connected);
  const usageQueue = createUsageQueue(redis, settings.queuePrefix);
  usageQueue.on("error", redisOutage.listener("queue error"));
  const database = createDatabase(settings.databaseUrl, {
    onIdleClientError: (error) => logger.warn({ err: error }, "idle database connection lost"),
  });
  return { settings, logger, database, redis, usageQueue, metrics: createMetrics([usageQueue]), redisOutage };
}

/** Closes what createDeps opened, queue before Redis before the database. */
export async function closeDeps(deps: Deps<ServiceSettings>): Promise<void> {
  await deps.usageQueue.close();
  await deps.redis.quit().catch(() => deps.redis.disconnect());
  await deps.database.pool.end();
}
