import type { Queue } from "bullmq";
import { Cluster, Redis } from "ioredis";
import { type DestinationStream, type Logger, pino } from "pino";
import type { RedisTarget, Settings } from "./config.js";
import { createRedisOutageLog, type RedisOutageLog } from "./connection-log.js";
import { createDatabase, type Database } from "./db/client.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { createUsageQueue } from "./queue-producer.js";

export type Deps = {
  settings: Settings;
  logger: Logger;
  database: Database;
  /** For commands and the producer; workers open their own blocking connection. */
  redis: RedisClient;
  usageQueue: Queue;
  metrics: Metrics;
  /** Where every Redis connection of the process reports its errors (a worker's too). */
  redisOutage: RedisOutageLog;
};

// Bearer tokens arrive only in this header; nothing else that could hold one is logged.
const REDACTED_PATHS = ["req.headers.authorization", "headers.authorization", "authorization", "token"];

export function createLogger(settings: Pick<Settings, "logLevel">, destination?: DestinationStream): Logger {
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
  if ("url" in target) return new Redis(target.url, connection);
  // The cluster's seed nodes; the rest of its topology, and every change of it (a failover), is
  // learnt from the nodes themselves.
  return new Cluster(target.clusterNodes, { enableOfflineQueue: connection.enableOfflineQueue, redisOptions: connection });
}

export function createDeps(settings: Settings, options: { logger?: Logger } = {}): Deps {
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
export async function closeDeps(deps: Deps): Promise<void> {
  await deps.usageQueue.close();
  await deps.redis.quit().catch(() => deps.redis.disconnect());
  await deps.database.pool.end();
}
