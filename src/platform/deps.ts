import type { Queue } from "bullmq";
import { Cluster, Redis } from "ioredis";
import { type DestinationStream, type Logger, pino } from "pino";
import type { ReceiverSettings, RedisTarget, ServiceSettings, Settings, WorkerSettings } from "./config.js";
import { createDatabase, type Database } from "./db/client.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { createUsageQueue } from "./queue-producer.js";

/** `S`: the settings of the process's role (config.ts ROLES); the all-in-one process's by default. */
export type Deps<S extends ServiceSettings = Settings> = {
  settings: S;
  logger: Logger;
  database: Database;
  /** For commands and the producer; workers open their own blocking connection. */
  redis: RedisClient;
  usageQueue: Queue;
  metrics: Metrics;
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
  if ("url" in target) return new Redis(target.url, connection);
  // The cluster's seed nodes; the rest of its topology, and every change of it (a failover), is
  // learnt from the nodes themselves.
  return new Cluster(target.clusterNodes, { enableOfflineQueue: connection.enableOfflineQueue, redisOptions: connection });
}

export function createDeps<S extends ServiceSettings>(settings: S, options: { logger?: Logger } = {}): Deps<S> {
  const logger = options.logger ?? createLogger(settings);
  const redis = createRedis(settings.redis, { forWorker: false });
  redis.on("error", (error) => logger.warn({ err: error }, "redis connection error"));
  const usageQueue = createUsageQueue(redis, settings.queuePrefix);
  usageQueue.on("error", (error) => logger.warn({ err: error }, "queue error"));
  const database = createDatabase(settings.databaseUrl, {
    onIdleClientError: (error) => logger.warn({ err: error }, "idle database connection lost"),
  });
  return { settings, logger, database, redis, usageQueue, metrics: createMetrics([usageQueue]) };
}

/** Closes what createDeps opened, queue before Redis before the database. */
export async function closeDeps(deps: Deps<ServiceSettings>): Promise<void> {
  await deps.usageQueue.close();
  await deps.redis.quit().catch(() => deps.redis.disconnect());
  await deps.database.pool.end();
}
