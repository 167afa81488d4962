import { z } from "zod";

const MIN_TOKEN_LENGTH = 16;

const commaList = (value: string) =>
  value
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0);

const positiveInt = (fallback: number) =>
  z.coerce.number().int().positive().default(fallback);

const envSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }),
  REDIS_URL: z.url({ protocol: /^rediss?$/ }),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  INGEST_TOKENS: z
    .string()
    .transform(commaList)
    .pipe(
      z
        .array(z.string().min(MIN_TOKEN_LENGTH, `each token needs at least ${MIN_TOKEN_LENGTH} characters`))
        .min(1, "at least one token is required"),
    ),
  ADMIN_TOKEN: z.string().min(MIN_TOKEN_LENGTH, `needs at least ${MIN_TOKEN_LENGTH} characters`),
  PRICING_FILE: z.string().min(1).default("config/pricing.yaml"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  LOW_BALANCE_THRESHOLDS: z
    .string()
    .default("")
    .transform(commaList)
    .pipe(z.array(z.string().regex(/^\d+$/, "credit amounts are non-negative integers")))
    .transform((values) => [...new Set(values.map(BigInt))].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0))),
  // LiteLLM's default batch is 512 calls carrying their prompts and responses.
  MAX_BODY_BYTES: positiveInt(32 * 1024 * 1024),
  QUEUE_HIGH_WATER: positiveInt(200_000),
  SHUTDOWN_TIMEOUT_MS: positiveInt(30_000),
  // BullMQ's job lock: a worker silent for this long (a blocked event loop) loses its jobs to others.
  WORKER_LOCK_DURATION_MS: positiveInt(30_000),
  // Not in the external contract: lets tests and side-by-side deployments share one Redis.
  // On Redis Cluster, wrap it in a hash tag ({spend-ingest}) so a queue's keys share a slot.
  QUEUE_PREFIX: z
    .string()
    .regex(/^(\{[A-Za-z0-9_-]+\}|[A-Za-z0-9_-]+)$/, "letters, digits, '-' and '_', optionally as a {hash tag}")
    .default("spend-ingest"),
});

export type Settings = {
  databaseUrl: string;
  redisUrl: string;
  port: number;
  ingestTokens: string[];
  adminToken: string;
  pricingFile: string;
  logLevel: z.infer<typeof envSchema>["LOG_LEVEL"];
  /** Highest first. */
  lowBalanceThresholds: bigint[];
  maxBodyBytes: number;
  queueHighWater: number;
  shutdownTimeoutMs: number;
  workerLockDurationMs: number;
  queuePrefix: string;
};

export class InvalidSettingError extends Error {
  constructor(readonly setting: string, detail: string) {
    super(`invalid setting ${setting}: ${detail}`);
    this.name = "InvalidSettingError";
  }
}

type EnvSource = Record<string, string | undefined>;

function parseWith<T>(schema: z.ZodType<T>, source: EnvSource): T {
  const parsed = schema.safeParse(source);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const setting = String(issue.path[0] ?? "environment");
  throw new InvalidSettingError(setting, source[setting] === undefined ? "is required" : issue.message);
}

/** Only what `db:migrate` needs. */
export function parseMigrationEnv(source: EnvSource): { databaseUrl: string } {
  return { databaseUrl: parseWith(envSchema.pick({ DATABASE_URL: true }), source).DATABASE_URL };
}

/** What the operator CLI needs: the stores, not the HTTP secrets. */
export function parseOpsEnv(source: EnvSource): Pick<Settings, "databaseUrl" | "redisUrl" | "queuePrefix"> {
  const env = parseWith(envSchema.pick({ DATABASE_URL: true, REDIS_URL: true, QUEUE_PREFIX: true }), source);
  return { databaseUrl: env.DATABASE_URL, redisUrl: env.REDIS_URL, queuePrefix: env.QUEUE_PREFIX };
}

/** What pricing alone needs, for `ops price`. */
export function parsePricingEnv(source: EnvSource): Pick<Settings, "pricingFile"> {
  return { pricingFile: parseWith(envSchema.pick({ PRICING_FILE: true }), source).PRICING_FILE };
}

/** Validates the environment once; the first bad setting is named in the error. */
export function parseEnv(source: EnvSource): Settings {
  const env = parseWith(envSchema, source);
  return {
    databaseUrl: env.DATABASE_URL,
    redisUrl: env.REDIS_URL,
    port: env.PORT,
    ingestTokens: env.INGEST_TOKENS,
    adminToken: env.ADMIN_TOKEN,
    pricingFile: env.PRICING_FILE,
    logLevel: env.LOG_LEVEL,
    lowBalanceThresholds: env.LOW_BALANCE_THRESHOLDS,
    maxBodyBytes: env.MAX_BODY_BYTES,
    queueHighWater: env.QUEUE_HIGH_WATER,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    workerLockDurationMs: env.WORKER_LOCK_DURATION_MS,
    queuePrefix: env.QUEUE_PREFIX,
  };
}
