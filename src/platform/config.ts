import { isIP } from "node:net";
import { z } from "zod";

const MIN_TOKEN_LENGTH = 16;

const commaList = (value: string) =>
  value
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0);

const positiveInt = (fallback: number) =>
  z.coerce.number().int().positive().default(fallback);

/** A TCP port; 0 asks the system for a free one. */
const tcpPort = z
  .string()
  .regex(/^\d{1,5}$/, "a port number from 0 to 65535")
  .transform(Number)
  .pipe(z.number().max(65535, "a port number from 0 to 65535"));

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

/**
 * Every setting, with its one-line meaning (`.meta({ description })`, last in each chain, where
 * settingMeaning reads it). docs/reference/configuration.md has a row for each, checked by a test.
 */
const envSchema = z.object({
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).meta({ description: "PostgreSQL connection string" }),
  // Required unless REDIS_CLUSTER_NODES is set (checked by the queue group below, which reads both).
  REDIS_URL: z
    .url({ protocol: /^rediss?$/, abort: true })
    // The path is the database index; ioredis would read `/abc` as no index at all (database 0).
    .refine((url) => /^\/?(\d+)?$/.test(new URL(url).pathname), "the database index after the port is a whole number, such as redis://redis:6379/0")
    .optional()
    .meta({ description: "Redis connection string, redis:// or rediss://, the database index in its path" }),
  REDIS_CLUSTER_NODES: z
    .string()
    .transform(commaList)
    .pipe(z.array(clusterNode).min(1, "at least one host:port"))
    .optional()
    .meta({ description: "seed nodes of a Redis Cluster (host:port, comma-separated): the queue runs there instead of REDIS_URL" }),
  // Redis replicates asynchronously: a master lost before its replica has a batch loses the batch,
  // and the caller, told 2xx, never sends it again. Unset: 1 on a cluster, where failover to a
  // replica is the point, and 0 on one node, which may have no replica.
  QUEUE_REPLICA_ACKS: z.coerce
    .number()
    .int()
    .min(0)
    .max(16)
    .optional()
    .meta({ description: "Redis replicas that must hold a batch's jobs (Redis WAIT) before the receiver answers 2xx" }),
  // Workers never read it, so a receiver and workers started from one environment on one host
  // do not contend for it.
  PORT: tcpPort.default(8080).meta({ description: "the receiver's (and the all-in-one process's) HTTP port" }),
  // An IP address, never a name: a name would wait on DNS at start and could bind other addresses
  // than the one meant. Every interface by default, as a container's published port needs; `npm
  // run dev` defaults to 127.0.0.1.
  HOST: z
    .string()
    .refine((text) => isIP(text) !== 0, "an IP address to listen on, such as 0.0.0.0, 127.0.0.1 or ::")
    .default("0.0.0.0")
    .meta({ description: "the IP address every listener of the process (PORT, METRICS_PORT) binds" }),
  METRICS_PORT: tcpPort.optional().meta({ description: "a worker's health and metrics port; unset, a worker opens no listener" }),
  INGEST_TOKENS: z
    .string()
    .transform(commaList)
    .pipe(
      z
        .array(z.string().min(MIN_TOKEN_LENGTH, `each token needs at least ${MIN_TOKEN_LENGTH} characters`))
        .min(1, "at least one token is required"),
    )
    .meta({ description: "bearer tokens the callback route accepts, comma-separated (two at once to rotate)" }),
  ADMIN_TOKEN: z
    .string()
    .min(MIN_TOKEN_LENGTH, `needs at least ${MIN_TOKEN_LENGTH} characters`)
    .meta({ description: "the account API's bearer token" }),
  QUEUE_UI_TOKEN: z
    .string()
    .min(MIN_TOKEN_LENGTH, `needs at least ${MIN_TOKEN_LENGTH} characters`)
    .optional()
    .meta({ description: "the queue UI's own password; unset, the UI is not served" }),
  QUEUE_UI_ACTIONS: z.enum(["off", "on"]).default("off").meta({ description: "whether the queue UI may retry, promote, pause, resume and remove jobs" }),
  CONSOLE_TOKEN: z
    .string()
    .min(MIN_TOKEN_LENGTH, `needs at least ${MIN_TOKEN_LENGTH} characters`)
    .optional()
    .meta({ description: "the console's own sign-in token; unset, the console is not served" }),
  BILLING_ACCOUNT_FROM: z
    .string()
    .default(DEFAULT_BILLING_ACCOUNT_FROM.join(","))
    .transform(commaList)
    .pipe(
      z
        .array(z.enum(BILLING_ACCOUNT_SOURCES, { error: `each source is one of ${BILLING_ACCOUNT_SOURCES.join(", ")}` }))
        .min(1, "at least one source is required")
        .refine((sources) => new Set(sources).size === sources.length, "a source is listed twice"),
    )
    .meta({ description: "where the paying account is read from, in order" }),
  PRICING_FILE: z.string().min(1).default("config/pricing.yaml").meta({ description: "the price book's path" }),
  // Read only, by the gateway reconcile and the worker's backfill.
  LITELLM_DATABASE_URL: z
    .url({ protocol: /^postgres(ql)?$/ })
    .optional()
    .meta({ description: "LiteLLM's own PostgreSQL; unset, no backfill of lost callbacks" }),
  GATEWAY_RECONCILE_INTERVAL: duration("5m").meta({ description: "how often a worker's backfill checks LiteLLM's spend log" }),
  // LiteLLM writes its spend log in batches, a minute or more after the call.
  GATEWAY_RECONCILE_LAG: duration("10m").meta({ description: "how far behind now the backfill checks" }),
  // Rows LiteLLM writes late (long calls, its writer behind) are still found.
  GATEWAY_RECONCILE_OVERLAP: duration("1h").meta({ description: "how far behind its watermark each backfill run looks again" }),
  // Rows older than it are deleted before the backfill may read them. Unset: not known, and the
  // backfill's lag is not compared with it.
  LITELLM_SPEND_LOG_RETENTION: z
    .string()
    .transform(durationMs)
    .optional()
    .meta({ description: "LiteLLM's maximum_spend_logs_retention_period" }),
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
    )
    .meta({ description: "what to block at LiteLLM when an account is depleted: off, team, key or team,key" }),
  // Negative for an overdraft.
  ENFORCE_BELOW: z
    .string()
    .regex(/^-?\d{1,16}$/, "a whole number of credits")
    .default("0")
    .transform(BigInt)
    .refine((credits: bigint) => credits >= -BigInt(Number.MAX_SAFE_INTEGER) && credits <= BigInt(Number.MAX_SAFE_INTEGER), "within ±(2^53 − 1) credits")
    .meta({ description: "an account is depleted at this many credits or fewer" }),
  LITELLM_ADMIN_URL: z
    // abort: zod runs later checks after a failed one, and the check below cannot read a non-URL.
    .url({ protocol: /^https?$/, abort: true, error: "an http or https URL, such as http://litellm:4000" })
    // The master key is the only credential: one in the URL would be logged wherever the URL is.
    .refine((url) => new URL(url).username === "" && new URL(url).password === "", "no user or password in the URL; the master key is the credential")
    .optional()
    .meta({ description: "LiteLLM's proxy, whose admin API enforcement blocks and unblocks through" }),
  // Only ever sent to LITELLM_ADMIN_URL, never logged (nor is it in this refusal). It goes as is
  // into an Authorization header, where fetch refuses control characters and anything past
  // U+00FF and trims spaces: such a key would fail every block and unblock, forever.
  LITELLM_MASTER_KEY: z
    .string()
    .regex(/^[\x21-\x7e]{1,4096}$/, "1 to 4096 visible ASCII characters (no space, control character or other letter): it is sent in an HTTP header")
    .optional()
    .meta({ description: "LiteLLM's master key, a secret, for its admin API" }),
  LOG_LEVEL: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info")
    .meta({ description: "pino's log level" }),
  // Raised once per bucket.
  CREDITS_EXPIRING_WITHIN: duration("7d").meta({ description: "how close to its expiry a bucket with credits left raises credits_expiring" }),
  // Capped so that credits still leave the balance within a minute of their expiry; the fault
  // suite shortens it to sweep under its kills.
  CREDIT_EXPIRY_INTERVAL: duration("15s")
    .refine((ms: number) => ms <= 30_000, "at most 30s: expired credits must leave the balance within a minute")
    .meta({ description: "how often each worker sweeps for expired credit buckets" }),
  // Capped so that usage by hour trails the charges by well under a minute (a run, and the oldest
  // charge transaction still open, are added to it); the fault suite shortens it.
  USAGE_ROLLUP_INTERVAL: duration("10s")
    .refine((ms: number) => ms <= 30_000, "at most 30s: usage must trail the charges by under a minute")
    .meta({ description: "how often the workers add the receipts committed since the last run to the usage by hour" }),
  // Delivered alerts are kept for the console's recent alerts and for an operator to look back on;
  // the log lines themselves are the alerting pipeline's.
  ALERT_RETENTION: duration("7d").meta({ description: "how long a delivered alert is kept in the outbox before the workers prune it" }),
  LOW_BALANCE_THRESHOLDS: z
    .string()
    .default("")
    .transform(commaList)
    .pipe(z.array(z.string().regex(/^\d+$/, "credit amounts are non-negative integers")))
    .transform((values) => [...new Set(values.map(BigInt))].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)))
    .meta({ description: "credit amounts whose crossing raises low_balance" }),
  // LiteLLM's default batch is 512 calls carrying their prompts and responses.
  MAX_BODY_BYTES: positiveInt(32 * 1024 * 1024).meta({ description: "the callback body limit, in bytes" }),
  // LiteLLM sends 512 calls a batch; a few thousand tiny items cost little, millions sink a process.
  MAX_ITEMS_PER_REQUEST: positiveInt(4096).meta({ description: "items one callback request may hold" }),
  // The receiver's memory bound.
  MAX_BYTES_IN_FLIGHT: positiveInt(96 * 1024 * 1024).meta({ description: "bytes of callback bodies received or parsed at once, across requests" }),
  // At most; a receiver takes fewer when its file-descriptor limit leaves less room (connectionCap).
  MAX_CONNECTIONS: positiveInt(1000).meta({ description: "open HTTP connections a process holds at most" }),
  QUEUE_HIGH_WATER: positiveInt(200_000).meta({ description: "waiting jobs above which the receiver answers 503" }),
  SHUTDOWN_TIMEOUT_MS: positiveInt(30_000).meta({ description: "how long SIGTERM waits for the jobs in hand" }),
  // A worker silent for this long (a blocked event loop) loses its jobs to others.
  WORKER_LOCK_DURATION_MS: positiveInt(30_000).meta({ description: "BullMQ's job lock, in milliseconds" }),
  // Lets tests and side-by-side deployments share one Redis. On Redis Cluster it is made a hash tag
  // unless it is one (the queue group below).
  QUEUE_PREFIX: z
    .string()
    .regex(/^(\{[A-Za-z0-9_-]+\}|[A-Za-z0-9_-]+)$/, "letters, digits, '-' and '_', optionally as a {hash tag}")
    .default("spend-ingest")
    .meta({ description: "the prefix of the queue's Redis keys" }),
});

/** Where the queue lives: one Redis server, or the seed nodes of a Redis Cluster. */
export type RedisTarget = { url: string } | { clusterNodes: { host: string; port: number }[] };

type Env = z.output<typeof envSchema>;
export type SettingName = keyof Env;

/** Every setting's name, for checks that go through them all. */
export const SETTING_NAMES = Object.keys(envSchema.shape) as SettingName[];

/** A setting's one-line meaning, as the schema declares it. */
export function settingMeaning(setting: SettingName): string {
  return envSchema.shape[setting].meta()?.description ?? "";
}

/** Records a problem with settings that each parsed; returns no usable value, like z.NEVER. */
type Refuse = (setting: SettingName, detail: string) => never;

/** Settings read together, and the settings object the code receives for them. */
const group = <K extends SettingName, T extends object>(reads: readonly K[], settings: (env: Pick<Env, K>, refuse: Refuse) => T) => ({ reads, settings });

/**
 * Every setting belongs to the groups that read it; a process parses the groups it uses and no
 * other setting, so a worker never refuses to start over the receiver's tokens.
 */
const SETTING_GROUPS = {
  database: group(["DATABASE_URL"], (env) => ({ databaseUrl: env.DATABASE_URL })),
  // On a cluster the prefix is wrapped in a hash tag unless it is one already: BullMQ's scripts
  // touch several of a queue's keys at once, which a cluster allows only within one slot.
  queue: group(["REDIS_URL", "REDIS_CLUSTER_NODES", "QUEUE_PREFIX"], (env, refuse) => {
    if (env.REDIS_CLUSTER_NODES !== undefined) {
      const prefix = env.QUEUE_PREFIX.startsWith("{") ? env.QUEUE_PREFIX : `{${env.QUEUE_PREFIX}}`;
      return { redis: { clusterNodes: env.REDIS_CLUSTER_NODES } as RedisTarget, queuePrefix: prefix };
    }
    const url = env.REDIS_URL ?? refuse("REDIS_URL", "is required (or REDIS_CLUSTER_NODES for a Redis Cluster)");
    return { redis: { url } as RedisTarget, queuePrefix: env.QUEUE_PREFIX };
  }),
  service: group(["LOG_LEVEL", "SHUTDOWN_TIMEOUT_MS"], (env) => ({ logLevel: env.LOG_LEVEL, shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS })),
  /** What any HTTP listener of the process (PORT, METRICS_PORT) is bound with. */
  listener: group(["HOST", "MAX_CONNECTIONS"], (env) => ({ host: env.HOST, maxConnections: env.MAX_CONNECTIONS })),
  receiver: group(
    [
      "PORT",
      "INGEST_TOKENS",
      "ADMIN_TOKEN",
      "QUEUE_UI_TOKEN",
      "QUEUE_UI_ACTIONS",
      "CONSOLE_TOKEN",
      "MAX_BODY_BYTES",
      "MAX_ITEMS_PER_REQUEST",
      "MAX_BYTES_IN_FLIGHT",
      "QUEUE_HIGH_WATER",
      "QUEUE_REPLICA_ACKS",
      "REDIS_CLUSTER_NODES",
    ],
    (env, refuse) => {
      // One secret per audience: the account API's or the gateway's token must never open the queue UI.
      if (env.QUEUE_UI_TOKEN !== undefined && [env.ADMIN_TOKEN, ...env.INGEST_TOKENS].includes(env.QUEUE_UI_TOKEN)) {
        refuse("QUEUE_UI_TOKEN", "must differ from ADMIN_TOKEN and every INGEST_TOKENS token");
      }
      if (env.CONSOLE_TOKEN !== undefined && [env.ADMIN_TOKEN, env.QUEUE_UI_TOKEN, ...env.INGEST_TOKENS].includes(env.CONSOLE_TOKEN)) {
        refuse("CONSOLE_TOKEN", "must differ from ADMIN_TOKEN, QUEUE_UI_TOKEN and every INGEST_TOKENS token");
      }
      if (env.MAX_BYTES_IN_FLIGHT < env.MAX_BODY_BYTES) {
        refuse("MAX_BYTES_IN_FLIGHT", "must be at least MAX_BODY_BYTES, or no body of the largest size is ever taken");
      }
      return {
        port: env.PORT,
        ingestTokens: env.INGEST_TOKENS,
        adminToken: env.ADMIN_TOKEN,
        queueUiToken: env.QUEUE_UI_TOKEN,
        queueUiActions: env.QUEUE_UI_ACTIONS === "on",
        /** Unset: no console. */
        consoleToken: env.CONSOLE_TOKEN,
        maxBodyBytes: env.MAX_BODY_BYTES,
        maxItemsPerRequest: env.MAX_ITEMS_PER_REQUEST,
        maxBytesInFlight: env.MAX_BYTES_IN_FLIGHT,
        queueHighWater: env.QUEUE_HIGH_WATER,
        /** Replicas that must acknowledge a batch before it is answered; see QUEUE_REPLICA_ACKS. */
        queueReplicaAcks: env.QUEUE_REPLICA_ACKS ?? (env.REDIS_CLUSTER_NODES !== undefined ? 1 : 0),
      };
    },
  ),
  payer: group(["BILLING_ACCOUNT_FROM"], (env) => ({ billingAccountFrom: env.BILLING_ACCOUNT_FROM })),
  enforcement: group(["ENFORCE_ON_DEPLETED", "ENFORCE_BELOW"], (env) => ({
    // An EnforcementPolicy (books/enforcement.ts).
    enforcement: { blocks: env.ENFORCE_ON_DEPLETED as readonly PrincipalKind[], below: env.ENFORCE_BELOW },
  })),
  balanceAlerts: group(["LOW_BALANCE_THRESHOLDS"], (env) => ({
    /** Highest first. */
    lowBalanceThresholds: env.LOW_BALANCE_THRESHOLDS,
  })),
  pricing: group(["PRICING_FILE"], (env) => ({ pricingFile: env.PRICING_FILE })),
  worker: group(["WORKER_LOCK_DURATION_MS", "CREDITS_EXPIRING_WITHIN", "CREDIT_EXPIRY_INTERVAL", "USAGE_ROLLUP_INTERVAL", "ALERT_RETENTION"], (env) => ({
    workerLockDurationMs: env.WORKER_LOCK_DURATION_MS,
    creditsExpiringWithinMs: env.CREDITS_EXPIRING_WITHIN,
    creditExpiryIntervalMs: env.CREDIT_EXPIRY_INTERVAL,
    usageRollupIntervalMs: env.USAGE_ROLLUP_INTERVAL,
    alertRetentionMs: env.ALERT_RETENTION,
  })),
  metricsPort: group(["METRICS_PORT"], (env) => ({ metricsPort: env.METRICS_PORT })),
  gatewayBackfill: group(
    ["LITELLM_DATABASE_URL", "GATEWAY_RECONCILE_INTERVAL", "GATEWAY_RECONCILE_LAG", "GATEWAY_RECONCILE_OVERLAP", "LITELLM_SPEND_LOG_RETENTION"],
    (env) => ({
      /** Unset: no backfill. */
      litellmDatabaseUrl: env.LITELLM_DATABASE_URL,
      gatewayReconcileIntervalMs: env.GATEWAY_RECONCILE_INTERVAL,
      gatewayReconcileLagMs: env.GATEWAY_RECONCILE_LAG,
      gatewayReconcileOverlapMs: env.GATEWAY_RECONCILE_OVERLAP,
      /** LiteLLM's spend-log retention, when the operator states it. */
      litellmSpendLogRetentionMs: env.LITELLM_SPEND_LOG_RETENTION,
    }),
  ),
  enforcementDelivery: group(["ENFORCE_ON_DEPLETED", "LITELLM_ADMIN_URL", "LITELLM_MASTER_KEY"], (env, refuse) => {
    for (const setting of ["LITELLM_ADMIN_URL", "LITELLM_MASTER_KEY"] as const) {
      if (env.ENFORCE_ON_DEPLETED.length > 0 && env[setting] === undefined) refuse(setting, "is required when ENFORCE_ON_DEPLETED is not off");
    }
    return {
      // Also with enforcement off: actions decided before it was turned off are still delivered.
      litellmAdmin:
        env.LITELLM_ADMIN_URL !== undefined && env.LITELLM_MASTER_KEY !== undefined
          ? { url: env.LITELLM_ADMIN_URL, masterKey: env.LITELLM_MASTER_KEY }
          : undefined,
    };
  }),
  /** `ops gateway reconcile`, which has nothing to do without LiteLLM's database. */
  litellmDatabase: group(["LITELLM_DATABASE_URL"], (env, refuse) => ({
    litellmDatabaseUrl: env.LITELLM_DATABASE_URL ?? refuse("LITELLM_DATABASE_URL", "is required"),
  })),
};

export type SettingGroup = keyof typeof SETTING_GROUPS;
type Intersection<U> = (U extends unknown ? (part: U) => void : never) extends (whole: infer I) => void ? I : never;
/** The settings object of some groups: each group's fields together. */
export type SettingsOf<G extends SettingGroup> = Intersection<ReturnType<(typeof SETTING_GROUPS)[G]["settings"]>>;

const SERVICE = ["database", "queue", "service", "listener"] as const;
// The price book too: the console's receipt page explains each term of a price with it.
const RECEIVING = ["receiver", "payer", "enforcement", "balanceAlerts", "pricing"] as const;
const CHARGING = ["worker", "pricing", "payer", "enforcement", "balanceAlerts", "gatewayBackfill", "enforcementDelivery"] as const;

/**
 * The groups each process reads. `npm run dev` runs the all-in-one process; each ops command
 * names its own groups. METRICS_PORT is a worker's alone: the all-in-one process serves health
 * and metrics on PORT.
 */
export const ROLES = {
  migrate: ["database"],
  receiver: [...SERVICE, ...RECEIVING],
  worker: [...SERVICE, "metricsPort", ...CHARGING],
  "all-in-one": [...SERVICE, ...RECEIVING, ...CHARGING],
} as const;
type RoleSettings<R extends keyof typeof ROLES> = SettingsOf<(typeof ROLES)[R][number]>;

/** What every service process reads: its stores, logging, shutdown and listener. */
export type ServiceSettings = SettingsOf<(typeof SERVICE)[number]>;
/** What the receiver's routes read, in a receiver or the all-in-one process. */
export type ReceiverSettings = SettingsOf<(typeof SERVICE)[number] | (typeof RECEIVING)[number]>;
/** What the usage worker reads, in a worker or the all-in-one process. */
export type WorkerSettings = SettingsOf<(typeof SERVICE)[number] | (typeof CHARGING)[number]>;
/** Every setting of a whole service: the all-in-one process's. */
export type Settings = RoleSettings<"all-in-one">;

/** The settings `groups` read, in the schema's order: all that a role or an ops command checks. */
export function settingsReadBy(groups: readonly SettingGroup[]): SettingName[] {
  const read = new Set(groups.flatMap((name) => SETTING_GROUPS[name].reads));
  return SETTING_NAMES.filter((name) => read.has(name));
}

/**
 * `npm run dev` makes up its own tokens, so it runs only where NODE_ENV is unset, empty,
 * `development` or `test` (any case). A list of what is allowed, not of what is refused:
 * `Production`, `prod`, `staging` or a typo are all refused.
 */
export function nodeEnvAllowsDev(nodeEnv: string | undefined): boolean {
  return nodeEnv === undefined || nodeEnv === "" || ["development", "test"].includes(nodeEnv.toLowerCase());
}

/** A connection URL setting as it may be printed: its password masked. */
export function redactedUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

export type SettingProblem = { setting: SettingName; detail: string };

/** Every problem found in one reading of the settings; each is one line at start. */
export class InvalidSettingError extends Error {
  readonly lines: string[];

  constructor(readonly problems: readonly SettingProblem[]) {
    const lines = problems.map(({ setting, detail }) => `invalid setting ${setting}: ${detail}`);
    super(lines.join("\n"));
    this.name = "InvalidSettingError";
    this.lines = lines;
  }
}

type EnvSource = Record<string, string | undefined>;

/**
 * Reads the settings of `groups` (a role's, or an ops command's) and no other, or throws every
 * problem at once. Empty is unset for every setting, as a compose file passes an unset variable:
 * a required one is then "is required", one with a default takes it.
 */
export function parseSettings<G extends SettingGroup>(groups: readonly G[], source: EnvSource): SettingsOf<G> {
  const problems: SettingProblem[] = [];
  const env: Partial<Record<SettingName, unknown>> = {};
  const unusable = new Set<SettingName>();
  for (const name of settingsReadBy(groups)) {
    const value = source[name] === "" ? undefined : source[name];
    const parsed = envSchema.shape[name].safeParse(value);
    if (parsed.success) {
      env[name] = parsed.data;
    } else {
      unusable.add(name);
      problems.push({ setting: name, detail: value === undefined ? "is required" : parsed.error.issues[0]!.message });
    }
  }
  const refuse: Refuse = (setting, detail) => {
    problems.push({ setting, detail });
    return undefined as never;
  };
  const settings = {};
  // Each group once, though a role may list it twice (payer is both receiving's and charging's).
  for (const name of new Set(groups)) {
    const { reads, settings: read } = SETTING_GROUPS[name];
    // A group whose settings did not parse has its problems listed already.
    if (!reads.some((setting) => unusable.has(setting))) Object.assign(settings, read(env as never, refuse));
  }
  if (problems.length > 0) {
    throw new InvalidSettingError(problems.sort((a, b) => SETTING_NAMES.indexOf(a.setting) - SETTING_NAMES.indexOf(b.setting)));
  }
  return settings as SettingsOf<G>;
}
