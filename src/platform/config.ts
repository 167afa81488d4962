import { isIP } from "node:net";
import { z } from "zod";

const MIN_TOKEN_LENGTH = 16;

const commaList = (value: string) =>
  value
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0);

/** An optional setting; empty counts as unset, as a compose file passes an unset variable. */
const optional = <T extends z.ZodType>(schema: T) => z.preprocess((value) => (value === "" ? undefined : value), schema.optional());

const positiveInt = (fallback: number) =>
  z.coerce.number().int().positive().default(fallback);

/** A TCP port; 0 asks the system for a free one. */
const tcpPort = optional(
  z
    .string()
    .regex(/^\d{1,5}$/, "a port number from 0 to 65535")
    .transform(Number)
    .pipe(z.number().max(65535, "a port number from 0 to 65535")),
);

/**
 * Where the paying account is read from, in order. The first three are filled by LiteLLM from
 * the authenticated key (its admin-set metadata, team, user, organisation); the last two are
 * set by whoever makes the call, so they are used only when an operator lists them.
 */
export const BILLING_ACCOUNT_SOURCES = ["key_metadata", "team", "user", "org", "spend_logs_metadata", "end_user"] as const;
export type BillingAccountSource = (typeof BILLING_ACCOUNT_SOURCES)[number];
export const CLIENT_SETTABLE_SOURCES: readonly BillingAccountSource[] = ["spend_logs_metadata", "end_user"];
/** What enforcement may block at the gateway: a LiteLLM team, a key (by its hash), or both. */
export const PRINCIPAL_KINDS = ["team", "key"] as const;
export type PrincipalKind = (typeof PRINCIPAL_KINDS)[number];
/** `blocks` empty: enforcement is off. An account is depleted at `below` credits or fewer. */
export type EnforcementPolicy = { blocks: readonly PrincipalKind[]; below: bigint };
export const ENFORCEMENT_OFF: EnforcementPolicy = { blocks: [], below: 0n };

/** A duration: `300`, `300s`, `5m`, `1h`, `7d`, `500ms` (a bare number is seconds). */
const duration = (fallback: string) => z.string().default(fallback).transform(durationMs);

function durationMs(text: string, context: z.RefinementCtx): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match || Number(match[1]) === 0) {
    context.addIssue({ code: "custom", message: "a duration such as 300s, 5m, 1h or 7d" });
    return z.NEVER;
  }
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? "s"]!;
  return Number(match[1]) * unit;
}

/** `host:port`, the host a name, an IPv4 address or an IPv6 address in brackets. */
const clusterNode = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "each node is host:port")
  .transform((text) => {
    const colon = text.lastIndexOf(":");
    return { host: text.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port: Number(text.slice(colon + 1)) };
  })
  .refine((node) => node.port > 0 && node.port <= 65535, "each node is host:port, the port from 1 to 65535");

export const DEFAULT_BILLING_ACCOUNT_FROM: readonly BillingAccountSource[] = ["key_metadata", "team", "user"];

const envSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }),
  // Required unless REDIS_CLUSTER_NODES is set (checked in parseEnv, which knows both).
  REDIS_URL: optional(z.url({ protocol: /^rediss?$/ })),
  REDIS_CLUSTER_NODES: optional(z.string().transform(commaList).pipe(z.array(clusterNode).min(1, "at least one host:port"))),
  // Replicas that must hold a batch's jobs before the receiver answers 2xx (Redis WAIT). Redis
  // replicates asynchronously: a master lost before its replica has a batch loses the batch, and
  // the caller, told 2xx, never sends it again. Unset: 1 on a cluster, where failover to a
  // replica is the point, and 0 on one node, which may have no replica.
  QUEUE_REPLICA_ACKS: optional(z.coerce.number().int().min(0).max(16)),
  // The receiver's (and the all-in-one process's) HTTP port. Workers never read it, so a receiver
  // and workers started from one environment on one host do not contend for it.
  PORT: tcpPort.default(8080),
  // The address every listener of the process binds (PORT, METRICS_PORT). An IP address, never a
  // name: a name would wait on DNS at start and could bind other addresses than the one meant.
  // Every interface by default, as a container's published port needs; `npm run dev` defaults to
  // 127.0.0.1.
  HOST: optional(z.string().refine((text) => isIP(text) !== 0, "an IP address to listen on, such as 0.0.0.0, 127.0.0.1 or ::")).default("0.0.0.0"),
  // A worker's health and metrics; unset: a worker opens no listener at all.
  METRICS_PORT: tcpPort,
  INGEST_TOKENS: z
    .string()
    .transform(commaList)
    .pipe(
      z
        .array(z.string().min(MIN_TOKEN_LENGTH, `each token needs at least ${MIN_TOKEN_LENGTH} characters`))
        .min(1, "at least one token is required"),
    ),
  ADMIN_TOKEN: z.string().min(MIN_TOKEN_LENGTH, `needs at least ${MIN_TOKEN_LENGTH} characters`),
  // Unset or empty: the queue UI is not served at all.
  QUEUE_UI_TOKEN: optional(z.string().min(MIN_TOKEN_LENGTH, `needs at least ${MIN_TOKEN_LENGTH} characters`)),
  QUEUE_UI_ACTIONS: z.enum(["off", "on"]).default("off"),
  BILLING_ACCOUNT_FROM: z
    .string()
    .default(DEFAULT_BILLING_ACCOUNT_FROM.join(","))
    .transform(commaList)
    .pipe(
      z
        .array(z.enum(BILLING_ACCOUNT_SOURCES, { error: `each source is one of ${BILLING_ACCOUNT_SOURCES.join(", ")}` }))
        .min(1, "at least one source is required")
        .refine((sources) => new Set(sources).size === sources.length, "a source is listed twice"),
    ),
  PRICING_FILE: z.string().min(1).default("config/pricing.yaml"),
  // LiteLLM's own database, read only: the gateway reconcile and the worker's backfill.
  LITELLM_DATABASE_URL: optional(z.url({ protocol: /^postgres(ql)?$/ })),
  GATEWAY_RECONCILE_INTERVAL: duration("5m"),
  // LiteLLM writes its spend log in batches, a minute or more after the call.
  GATEWAY_RECONCILE_LAG: duration("10m"),
  // Each run looks back this far behind the watermark: rows LiteLLM writes late (long calls, its
  // writer behind) are still found.
  GATEWAY_RECONCILE_OVERLAP: duration("1h"),
  // LiteLLM's maximum_spend_logs_retention_period: rows older than it are deleted before the
  // backfill may read them. Unset: not known, and the backfill's lag is not compared with it.
  LITELLM_SPEND_LOG_RETENTION: optional(z.string().transform(durationMs)),
  // Block a depleted account's principals at the gateway: off, team, key or team,key.
  ENFORCE_ON_DEPLETED: z
    .string()
    .default("off")
    .transform(commaList)
    .pipe(
      z.union([
        z.tuple([z.literal("off")]).transform(() => []),
        z
          .array(z.enum(PRINCIPAL_KINDS, { error: "off, team, key or team,key" }))
          .min(1, "off, team, key or team,key")
          .refine((kinds) => new Set(kinds).size === kinds.length, "a kind is listed twice"),
      ]),
    ),
  // Depleted at this many credits or fewer; a whole number, negative for an overdraft.
  ENFORCE_BELOW: z
    .string()
    .regex(/^-?\d{1,16}$/, "a whole number of credits")
    .default("0")
    .transform(BigInt)
    .refine((credits: bigint) => credits >= -BigInt(Number.MAX_SAFE_INTEGER) && credits <= BigInt(Number.MAX_SAFE_INTEGER), "within ±(2^53 − 1) credits"),
  // LiteLLM's admin API, where enforcement blocks and unblocks.
  LITELLM_ADMIN_URL: optional(
    z
      // abort: zod runs later checks after a failed one, and the check below cannot read a non-URL.
      .url({ protocol: /^https?$/, abort: true, error: "an http or https URL, such as http://litellm:4000" })
      // The master key is the only credential: one in the URL would be logged wherever the URL is.
      .refine((url) => new URL(url).username === "" && new URL(url).password === "", "no user or password in the URL; the master key is the credential"),
  ),
  // A secret: only ever sent to LITELLM_ADMIN_URL, never logged (nor is it in this refusal). It
  // goes as is into an Authorization header, where fetch refuses control characters and anything
  // past U+00FF and trims spaces: such a key would fail every block and unblock, forever.
  LITELLM_MASTER_KEY: optional(
    z.string().regex(/^[\x21-\x7e]{1,4096}$/, "1 to 4096 visible ASCII characters (no space, control character or other letter): it is sent in an HTTP header"),
  ),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  // A bucket with credits left raises credits_expiring once when its expiry comes this close.
  CREDITS_EXPIRING_WITHIN: duration("7d"),
  // How often each worker sweeps for expired buckets. Capped so that credits still leave the
  // balance within a minute of their expiry; the fault suite shortens it to sweep under its kills.
  CREDIT_EXPIRY_INTERVAL: duration("15s").refine((ms: number) => ms <= 30_000, "at most 30s: expired credits must leave the balance within a minute"),
  LOW_BALANCE_THRESHOLDS: z
    .string()
    .default("")
    .transform(commaList)
    .pipe(z.array(z.string().regex(/^\d+$/, "credit amounts are non-negative integers")))
    .transform((values) => [...new Set(values.map(BigInt))].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0))),
  // LiteLLM's default batch is 512 calls carrying their prompts and responses.
  MAX_BODY_BYTES: positiveInt(32 * 1024 * 1024),
  // LiteLLM sends 512 calls a batch; a few thousand tiny items cost little, millions sink a process.
  MAX_ITEMS_PER_REQUEST: positiveInt(4096),
  // Bodies being received or parsed at once, across requests: the receiver's memory bound.
  MAX_BYTES_IN_FLIGHT: positiveInt(96 * 1024 * 1024),
  // At most; a receiver takes fewer when its file-descriptor limit leaves less room (connectionCap).
  MAX_CONNECTIONS: positiveInt(1000),
  QUEUE_HIGH_WATER: positiveInt(200_000),
  SHUTDOWN_TIMEOUT_MS: positiveInt(30_000),
  // BullMQ's job lock: a worker silent for this long (a blocked event loop) loses its jobs to others.
  WORKER_LOCK_DURATION_MS: positiveInt(30_000),
  // Not in the external contract: lets tests and side-by-side deployments share one Redis.
  // On Redis Cluster it is made a hash tag unless it is one (queueLocation).
  QUEUE_PREFIX: z
    .string()
    .regex(/^(\{[A-Za-z0-9_-]+\}|[A-Za-z0-9_-]+)$/, "letters, digits, '-' and '_', optionally as a {hash tag}")
    .default("spend-ingest"),
});

/** Where the queue lives: one Redis server, or the seed nodes of a Redis Cluster. */
export type RedisTarget = { url: string } | { clusterNodes: { host: string; port: number }[] };

export type Settings = {
  databaseUrl: string;
  redis: RedisTarget;
  /** Replicas that must acknowledge a batch before it is answered; see QUEUE_REPLICA_ACKS. */
  queueReplicaAcks: number;
  port: number;
  /** The address PORT and METRICS_PORT are bound on. */
  host: string;
  metricsPort: number | undefined;
  ingestTokens: string[];
  adminToken: string;
  queueUiToken: string | undefined;
  queueUiActions: boolean;
  billingAccountFrom: BillingAccountSource[];
  pricingFile: string;
  litellmDatabaseUrl: string | undefined;
  gatewayReconcileIntervalMs: number;
  gatewayReconcileLagMs: number;
  gatewayReconcileOverlapMs: number;
  /** LiteLLM's spend-log retention, when the operator states it. */
  litellmSpendLogRetentionMs: number | undefined;
  logLevel: z.infer<typeof envSchema>["LOG_LEVEL"];
  /** Highest first. */
  lowBalanceThresholds: bigint[];
  creditsExpiringWithinMs: number;
  creditExpiryIntervalMs: number;
  maxBodyBytes: number;
  maxItemsPerRequest: number;
  maxBytesInFlight: number;
  maxConnections: number;
  queueHighWater: number;
  shutdownTimeoutMs: number;
  workerLockDurationMs: number;
  /** On a cluster always a {hash tag}, so that all of a queue's keys share one slot. */
  queuePrefix: string;
  enforcement: EnforcementPolicy;
  /** Set whenever enforcement is on, and whenever both LITELLM_ADMIN_URL and LITELLM_MASTER_KEY are. */
  litellmAdmin: { url: string; masterKey: string } | undefined;
};

/** Every setting's name, for checks that go through them all. */
export const SETTING_NAMES = Object.keys(envSchema.shape) as (keyof typeof envSchema.shape)[];

/**
 * `npm run dev` makes up its own tokens, so it runs only where NODE_ENV is unset, empty,
 * `development` or `test` (any case). A list of what is allowed, not of what is refused:
 * `Production`, `prod`, `staging` or a typo are all refused.
 */
export function nodeEnvAllowsDev(nodeEnv: string | undefined): boolean {
  return nodeEnv === undefined || nodeEnv === "" || ["development", "test"].includes(nodeEnv.toLowerCase());
}

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

/** What the operator CLI needs: the stores and how callback items are read, not the HTTP secrets. */
export function parseOpsEnv(
  source: EnvSource,
): Pick<Settings, "databaseUrl" | "redis" | "queuePrefix" | "billingAccountFrom" | "enforcement" | "lowBalanceThresholds"> {
  const env = parseWith(
    envSchema.pick({
      DATABASE_URL: true,
      REDIS_URL: true,
      REDIS_CLUSTER_NODES: true,
      QUEUE_PREFIX: true,
      BILLING_ACCOUNT_FROM: true,
      ENFORCE_ON_DEPLETED: true,
      ENFORCE_BELOW: true,
      LOW_BALANCE_THRESHOLDS: true,
    }),
    source,
  );
  return {
    databaseUrl: env.DATABASE_URL,
    ...queueLocation(env),
    billingAccountFrom: env.BILLING_ACCOUNT_FROM,
    // A grant from the CLI decides unblocks like one through the API; workers deliver them.
    enforcement: { blocks: env.ENFORCE_ON_DEPLETED, below: env.ENFORCE_BELOW },
    // A debit or transfer from the CLI queues its balance alerts like one through the API; workers deliver them.
    lowBalanceThresholds: env.LOW_BALANCE_THRESHOLDS,
  };
}

/**
 * The queue's Redis and key prefix. On a cluster the prefix is wrapped in a hash tag unless it
 * is one already: BullMQ's scripts touch several of a queue's keys at once, which a cluster
 * allows only within one slot.
 */
function queueLocation(env: { REDIS_URL?: string; REDIS_CLUSTER_NODES?: { host: string; port: number }[]; QUEUE_PREFIX: string }) {
  if (env.REDIS_CLUSTER_NODES !== undefined) {
    const prefix = env.QUEUE_PREFIX.startsWith("{") ? env.QUEUE_PREFIX : `{${env.QUEUE_PREFIX}}`;
    return { redis: { clusterNodes: env.REDIS_CLUSTER_NODES }, queuePrefix: prefix };
  }
  if (env.REDIS_URL === undefined) throw new InvalidSettingError("REDIS_URL", "is required (or REDIS_CLUSTER_NODES for a Redis Cluster)");
  return { redis: { url: env.REDIS_URL }, queuePrefix: env.QUEUE_PREFIX };
}

/** What `ops gateway reconcile` needs beyond the stores: LiteLLM's database. */
export function parseGatewayEnv(source: EnvSource): { litellmDatabaseUrl: string } {
  const env = parseWith(envSchema.pick({ LITELLM_DATABASE_URL: true }), source);
  if (env.LITELLM_DATABASE_URL === undefined) throw new InvalidSettingError("LITELLM_DATABASE_URL", "is required");
  return { litellmDatabaseUrl: env.LITELLM_DATABASE_URL };
}

/** What pricing alone needs, for `ops price`. */
export function parsePricingEnv(source: EnvSource): Pick<Settings, "pricingFile" | "billingAccountFrom"> {
  const env = parseWith(envSchema.pick({ PRICING_FILE: true, BILLING_ACCOUNT_FROM: true }), source);
  return { pricingFile: env.PRICING_FILE, billingAccountFrom: env.BILLING_ACCOUNT_FROM };
}

/** Validates the environment once; the first bad setting is named in the error. */
export function parseEnv(source: EnvSource): Settings {
  const env = parseWith(envSchema, source);
  // One secret per audience: the account API's or the gateway's token must never open the queue UI.
  if (env.QUEUE_UI_TOKEN !== undefined && [env.ADMIN_TOKEN, ...env.INGEST_TOKENS].includes(env.QUEUE_UI_TOKEN)) {
    throw new InvalidSettingError("QUEUE_UI_TOKEN", "must differ from ADMIN_TOKEN and every INGEST_TOKENS token");
  }
  if (env.MAX_BYTES_IN_FLIGHT < env.MAX_BODY_BYTES) {
    throw new InvalidSettingError("MAX_BYTES_IN_FLIGHT", "must be at least MAX_BODY_BYTES, or no body of the largest size is ever taken");
  }
  const queue = queueLocation(env);
  const enforcing = env.ENFORCE_ON_DEPLETED.length > 0;
  for (const setting of ["LITELLM_ADMIN_URL", "LITELLM_MASTER_KEY"] as const) {
    if (enforcing && env[setting] === undefined) throw new InvalidSettingError(setting, "is required when ENFORCE_ON_DEPLETED is not off");
  }
  return {
    databaseUrl: env.DATABASE_URL,
    redis: queue.redis,
    queueReplicaAcks: env.QUEUE_REPLICA_ACKS ?? ("clusterNodes" in queue.redis ? 1 : 0),
    port: env.PORT,
    host: env.HOST,
    metricsPort: env.METRICS_PORT,
    ingestTokens: env.INGEST_TOKENS,
    adminToken: env.ADMIN_TOKEN,
    queueUiToken: env.QUEUE_UI_TOKEN,
    queueUiActions: env.QUEUE_UI_ACTIONS === "on",
    billingAccountFrom: env.BILLING_ACCOUNT_FROM,
    pricingFile: env.PRICING_FILE,
    litellmDatabaseUrl: env.LITELLM_DATABASE_URL,
    gatewayReconcileIntervalMs: env.GATEWAY_RECONCILE_INTERVAL,
    gatewayReconcileLagMs: env.GATEWAY_RECONCILE_LAG,
    gatewayReconcileOverlapMs: env.GATEWAY_RECONCILE_OVERLAP,
    litellmSpendLogRetentionMs: env.LITELLM_SPEND_LOG_RETENTION,
    logLevel: env.LOG_LEVEL,
    lowBalanceThresholds: env.LOW_BALANCE_THRESHOLDS,
    creditsExpiringWithinMs: env.CREDITS_EXPIRING_WITHIN,
    creditExpiryIntervalMs: env.CREDIT_EXPIRY_INTERVAL,
    maxBodyBytes: env.MAX_BODY_BYTES,
    maxItemsPerRequest: env.MAX_ITEMS_PER_REQUEST,
    maxBytesInFlight: env.MAX_BYTES_IN_FLIGHT,
    maxConnections: env.MAX_CONNECTIONS,
    queueHighWater: env.QUEUE_HIGH_WATER,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    workerLockDurationMs: env.WORKER_LOCK_DURATION_MS,
    queuePrefix: queue.queuePrefix,
    enforcement: { blocks: env.ENFORCE_ON_DEPLETED, below: env.ENFORCE_BELOW },
    // Also with enforcement off: actions decided before it was turned off are still delivered.
    litellmAdmin:
      env.LITELLM_ADMIN_URL !== undefined && env.LITELLM_MASTER_KEY !== undefined
        ? { url: env.LITELLM_ADMIN_URL, masterKey: env.LITELLM_MASTER_KEY }
        : undefined,
  };
}
