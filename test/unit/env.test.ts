import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  InvalidSettingError,
  nodeEnvAllowsDev,
  parseSettings,
  ROLES,
  type SettingGroup,
  SETTING_NAMES,
  type Settings,
  settingsReadBy,
} from "../../src/platform/config.js";

const valid = {
  DATABASE_URL: "postgres://postgres@127.0.0.1:5432/x",
  REDIS_URL: "redis://127.0.0.1:6379/3",
  INGEST_TOKENS: "ingest-token-aaaaaaaa, ingest-token-bbbbbbbb",
  ADMIN_TOKEN: "admin-token-aaaaaaaa",
};

type Source = Record<string, string | undefined>;

/** Every setting of a whole service, as the all-in-one process reads them. */
const parseEnv = (source: Source): Settings => parseSettings(ROLES["all-in-one"], source);

function settingError(source: Source, groups: readonly SettingGroup[] = ROLES["all-in-one"]): InvalidSettingError {
  try {
    parseSettings(groups, source);
  } catch (error) {
    if (error instanceof InvalidSettingError) return error;
    throw error;
  }
  throw new Error("parseSettings accepted the source");
}

/** The settings named in the refusal, in its order. */
const refused = (source: Source, groups?: readonly SettingGroup[]) => settingError(source, groups).problems.map((problem) => problem.setting);

describe("parseEnv", () => {
  it("reads the contract's settings with their defaults", () => {
    expect(parseEnv({ ...valid, LOW_BALANCE_THRESHOLDS: "100, 5000,100" })).toMatchObject({
      port: 8080,
      ingestTokens: ["ingest-token-aaaaaaaa", "ingest-token-bbbbbbbb"],
      pricingFile: "config/pricing.yaml",
      logLevel: "info",
      lowBalanceThresholds: [5000n, 100n],
      queuePrefix: "spend-ingest",
    });
  });

  it("names the missing or bad setting, and never echoes a token", () => {
    expect(settingError({ ...valid, INGEST_TOKENS: undefined }).message).toBe("invalid setting INGEST_TOKENS: is required");
    const short = settingError({ ...valid, INGEST_TOKENS: "ingest-token-aaaaaaaa,short-secret" });
    expect(short.problems.map((problem) => problem.setting)).toEqual(["INGEST_TOKENS"]);
    expect(short.message).not.toContain("short-secret");
    expect(refused({ ...valid, ADMIN_TOKEN: "tiny" })).toEqual(["ADMIN_TOKEN"]);
    expect(refused({ ...valid, DATABASE_URL: "mysql://x" })).toEqual(["DATABASE_URL"]);
    expect(refused({ ...valid, PORT: "eighty" })).toEqual(["PORT"]);
    expect(refused({ ...valid, LOW_BALANCE_THRESHOLDS: "10,-5" })).toEqual(["LOW_BALANCE_THRESHOLDS"]);
    expect(refused({ ...valid, LOG_LEVEL: "loud" })).toEqual(["LOG_LEVEL"]);
    expect(refused({ ...valid, QUEUE_PREFIX: "a:b" })).toEqual(["QUEUE_PREFIX"]);
    expect(parseEnv({ ...valid, QUEUE_PREFIX: "{spend-ingest}" }).queuePrefix).toBe("{spend-ingest}");
  });

  it("runs the queue on a Redis Cluster when its nodes are named: REDIS_URL unused, the prefix hash-tagged, a replica required", () => {
    const onCluster = parseEnv({ ...valid, REDIS_URL: undefined, REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-b.internal:7001,[::1]:7002" });
    expect(onCluster).toMatchObject({
      redis: { clusterNodes: [{ host: "10.0.0.1", port: 7000 }, { host: "redis-b.internal", port: 7001 }, { host: "::1", port: 7002 }] },
      queuePrefix: "{spend-ingest}",
      queueReplicaAcks: 1,
    });
    expect(parseEnv({ ...valid, REDIS_CLUSTER_NODES: "a:1", QUEUE_PREFIX: "{tenant-a}" }).queuePrefix).toBe("{tenant-a}");
    expect(parseEnv({ ...valid, REDIS_CLUSTER_NODES: "a:1", QUEUE_REPLICA_ACKS: "0" }).queueReplicaAcks).toBe(0);
    expect(parseEnv(valid)).toMatchObject({ redis: { url: "redis://127.0.0.1:6379/3" }, queuePrefix: "spend-ingest", queueReplicaAcks: 0 });
    expect(refused({ ...valid, REDIS_CLUSTER_NODES: "10.0.0.1" })).toEqual(["REDIS_CLUSTER_NODES"]);
    expect(refused({ ...valid, REDIS_CLUSTER_NODES: "a:70000" })).toEqual(["REDIS_CLUSTER_NODES"]);
    expect(refused({ ...valid, QUEUE_REPLICA_ACKS: "-1" })).toEqual(["QUEUE_REPLICA_ACKS"]);
    expect(settingError({ ...valid, REDIS_URL: undefined }).message).toBe(
      "invalid setting REDIS_URL: is required (or REDIS_CLUSTER_NODES for a Redis Cluster)",
    );
  });

  it("takes the payer only from key-derived sources unless others are listed, from a fixed vocabulary", () => {
    expect(parseEnv(valid).billingAccountFrom).toEqual(["key_metadata", "team", "user"]);
    expect(parseEnv({ ...valid, BILLING_ACCOUNT_FROM: "spend_logs_metadata, team" }).billingAccountFrom).toEqual([
      "spend_logs_metadata",
      "team",
    ]);
    expect(refused({ ...valid, BILLING_ACCOUNT_FROM: "team,billing_account_id" })).toEqual(["BILLING_ACCOUNT_FROM"]);
    expect(refused({ ...valid, BILLING_ACCOUNT_FROM: "team,team" })).toEqual(["BILLING_ACCOUNT_FROM"]);
    expect(refused({ ...valid, BILLING_ACCOUNT_FROM: ",," })).toEqual(["BILLING_ACCOUNT_FROM"]);
    expect(parseEnv({ ...valid, BILLING_ACCOUNT_FROM: "" }).billingAccountFrom).toEqual(["key_metadata", "team", "user"]);
  });

  it("serves the queue UI only with a token of its own, read-only unless actions are turned on", () => {
    expect(parseEnv(valid)).toMatchObject({ queueUiToken: undefined, queueUiActions: false });
    expect(parseEnv({ ...valid, QUEUE_UI_TOKEN: "" }).queueUiToken).toBeUndefined();
    expect(parseEnv({ ...valid, QUEUE_UI_TOKEN: "queue-ui-token-aaaa", QUEUE_UI_ACTIONS: "on" })).toMatchObject({
      queueUiToken: "queue-ui-token-aaaa",
      queueUiActions: true,
    });
    expect(refused({ ...valid, QUEUE_UI_TOKEN: "short" })).toEqual(["QUEUE_UI_TOKEN"]);
    expect(refused({ ...valid, QUEUE_UI_TOKEN: valid.ADMIN_TOKEN })).toEqual(["QUEUE_UI_TOKEN"]);
    expect(refused({ ...valid, QUEUE_UI_TOKEN: "ingest-token-bbbbbbbb" })).toEqual(["QUEUE_UI_TOKEN"]);
    expect(refused({ ...valid, QUEUE_UI_ACTIONS: "yes" })).toEqual(["QUEUE_UI_ACTIONS"]);
  });

  it("serves the console only with a token of its own, which no other token may be", () => {
    expect(parseEnv(valid).consoleToken).toBeUndefined();
    expect(parseEnv({ ...valid, CONSOLE_TOKEN: "" }).consoleToken).toBeUndefined();
    expect(parseEnv({ ...valid, CONSOLE_TOKEN: "console-token-aaaa" }).consoleToken).toBe("console-token-aaaa");
    expect(refused({ ...valid, CONSOLE_TOKEN: "short" })).toEqual(["CONSOLE_TOKEN"]);
    expect(refused({ ...valid, CONSOLE_TOKEN: valid.ADMIN_TOKEN })).toEqual(["CONSOLE_TOKEN"]);
    expect(refused({ ...valid, CONSOLE_TOKEN: "ingest-token-bbbbbbbb" })).toEqual(["CONSOLE_TOKEN"]);
    expect(refused({ ...valid, QUEUE_UI_TOKEN: "queue-ui-token-aaaa", CONSOLE_TOKEN: "queue-ui-token-aaaa" })).toEqual(["CONSOLE_TOKEN"]);
  });

  it("bounds every request and refuses a bytes-in-flight budget smaller than one body", () => {
    expect(parseEnv(valid)).toMatchObject({ maxItemsPerRequest: 4096, maxBytesInFlight: 96 * 1024 * 1024, maxConnections: 1000 });
    expect(refused({ ...valid, MAX_BODY_BYTES: "1000", MAX_BYTES_IN_FLIGHT: "999" })).toEqual(["MAX_BYTES_IN_FLIGHT"]);
    expect(refused({ ...valid, MAX_ITEMS_PER_REQUEST: "0" })).toEqual(["MAX_ITEMS_PER_REQUEST"]);
  });

  it("gives PORT to the receiver and METRICS_PORT, when set, to a worker; empty counts as unset", () => {
    const worker = (source: Source) => parseSettings(ROLES.worker, source);
    expect(parseEnv(valid).port).toBe(8080);
    expect(parseEnv({ ...valid, PORT: "" }).port).toBe(8080);
    expect(parseEnv({ ...valid, PORT: "0" }).port).toBe(0);
    expect(worker(valid).metricsPort).toBeUndefined();
    expect(worker({ ...valid, METRICS_PORT: "" }).metricsPort).toBeUndefined();
    expect(worker({ ...valid, METRICS_PORT: "0" }).metricsPort).toBe(0);
    expect(worker({ ...valid, METRICS_PORT: "9464" }).metricsPort).toBe(9464);
    for (const bad of ["65536", "-1", "9464x", " 9464", "1.5"]) {
      expect(settingError({ ...valid, METRICS_PORT: bad }, ROLES.worker).message).toBe("invalid setting METRICS_PORT: a port number from 0 to 65535");
    }
    expect(refused({ ...valid, PORT: "65536" })).toEqual(["PORT"]);
  });

  it("reads LiteLLM's database and the backfill's durations", () => {
    expect(parseEnv(valid)).toMatchObject({ litellmDatabaseUrl: undefined, gatewayReconcileIntervalMs: 300_000, gatewayReconcileLagMs: 600_000 });
    expect(parseEnv({ ...valid, LITELLM_DATABASE_URL: "", GATEWAY_RECONCILE_INTERVAL: "90", GATEWAY_RECONCILE_LAG: "1h" })).toMatchObject({
      litellmDatabaseUrl: undefined,
      gatewayReconcileIntervalMs: 90_000,
      gatewayReconcileLagMs: 3_600_000,
    });
    expect(parseEnv({ ...valid, LITELLM_DATABASE_URL: "postgres://ro@litellm:5432/litellm" }).litellmDatabaseUrl).toBe("postgres://ro@litellm:5432/litellm");
    expect(refused({ ...valid, LITELLM_DATABASE_URL: "mysql://x" })).toEqual(["LITELLM_DATABASE_URL"]);
    expect(refused({ ...valid, GATEWAY_RECONCILE_INTERVAL: "5 minutes" })).toEqual(["GATEWAY_RECONCILE_INTERVAL"]);
    expect(parseEnv(valid)).toMatchObject({ creditsExpiringWithinMs: 7 * 86_400_000 });
    expect(parseEnv({ ...valid, CREDITS_EXPIRING_WITHIN: "36h" })).toMatchObject({ creditsExpiringWithinMs: 36 * 3_600_000 });
    expect(refused({ ...valid, CREDITS_EXPIRING_WITHIN: "a week" })).toEqual(["CREDITS_EXPIRING_WITHIN"]);
    expect(parseEnv(valid)).toMatchObject({ creditExpiryIntervalMs: 15_000 });
    expect(parseEnv({ ...valid, CREDIT_EXPIRY_INTERVAL: "1s" })).toMatchObject({ creditExpiryIntervalMs: 1_000 });
    expect(refused({ ...valid, CREDIT_EXPIRY_INTERVAL: "1m" })).toEqual(["CREDIT_EXPIRY_INTERVAL"]);
    expect(refused({ ...valid, GATEWAY_RECONCILE_LAG: "0" })).toEqual(["GATEWAY_RECONCILE_LAG"]);
  });

  it("reads how long delivered alerts are kept as a duration, 7 days unless set", () => {
    expect(parseEnv(valid).alertRetentionMs).toBe(7 * 86_400_000);
    expect(parseEnv({ ...valid, ALERT_RETENTION: "36h" }).alertRetentionMs).toBe(36 * 3_600_000);
    expect(parseEnv({ ...valid, ALERT_RETENTION: "90" }).alertRetentionMs).toBe(90_000);
    for (const bad of ["0", "7 days", "-1d", "1w", "1.5d"]) expect(refused({ ...valid, ALERT_RETENTION: bad })).toEqual(["ALERT_RETENTION"]);
    expect(refused({ ...valid, ALERT_RETENTION: "1w" }, ROLES.worker)).toEqual(["ALERT_RETENTION"]);
    expect(parseSettings(ROLES.receiver, { ...valid, ALERT_RETENTION: "1w" })).not.toHaveProperty("alertRetentionMs");
  });

  it("reads LiteLLM's spend-log retention as a duration, unset or empty meaning not known", () => {
    expect(parseEnv(valid).litellmSpendLogRetentionMs).toBeUndefined();
    expect(parseEnv({ ...valid, LITELLM_SPEND_LOG_RETENTION: "" }).litellmSpendLogRetentionMs).toBeUndefined();
    expect(parseEnv({ ...valid, LITELLM_SPEND_LOG_RETENTION: "7d" }).litellmSpendLogRetentionMs).toBe(7 * 86_400_000);
    expect(parseEnv({ ...valid, LITELLM_SPEND_LOG_RETENTION: "36h" }).litellmSpendLogRetentionMs).toBe(36 * 3_600_000);
    for (const bad of ["0", "7 days", "-1d", "1w"]) {
      expect(refused({ ...valid, LITELLM_SPEND_LOG_RETENTION: bad })).toEqual(["LITELLM_SPEND_LOG_RETENTION"]);
    }
  });

  it("enforces only when asked, with LiteLLM's admin URL and master key, and never echoes the key", () => {
    expect(parseEnv(valid)).toMatchObject({ enforcement: { blocks: [], below: 0n }, litellmAdmin: undefined });
    const admin = { LITELLM_ADMIN_URL: "http://litellm:4000", LITELLM_MASTER_KEY: "sk-master-secret-value" };
    expect(parseEnv({ ...valid, ...admin, ENFORCE_ON_DEPLETED: "team,key", ENFORCE_BELOW: "-500" })).toMatchObject({
      enforcement: { blocks: ["team", "key"], below: -500n },
      litellmAdmin: { url: "http://litellm:4000", masterKey: "sk-master-secret-value" },
    });
    expect(parseEnv({ ...valid, ...admin, ENFORCE_ON_DEPLETED: "off" })).toMatchObject({ enforcement: { blocks: [] }, litellmAdmin: { url: "http://litellm:4000" } });
    expect(settingError({ ...valid, ENFORCE_ON_DEPLETED: "key" }).lines).toEqual([
      "invalid setting LITELLM_ADMIN_URL: is required when ENFORCE_ON_DEPLETED is not off",
      "invalid setting LITELLM_MASTER_KEY: is required when ENFORCE_ON_DEPLETED is not off",
    ]);
    expect(refused({ ...valid, ENFORCE_ON_DEPLETED: "key", LITELLM_ADMIN_URL: admin.LITELLM_ADMIN_URL })).toEqual(["LITELLM_MASTER_KEY"]);
    expect(parseEnv({ ...valid, ENFORCE_ON_DEPLETED: "" }).enforcement.blocks).toEqual([]);
    for (const bad of ["on", "customer", "team,team", "off,team", ","]) {
      expect(refused({ ...valid, ...admin, ENFORCE_ON_DEPLETED: bad })).toEqual(["ENFORCE_ON_DEPLETED"]);
    }
    for (const bad of ["1.5", "1e3", "x", "99999999999999999"]) expect(refused({ ...valid, ENFORCE_BELOW: bad })).toEqual(["ENFORCE_BELOW"]);
    expect(settingError({ ...valid, ...admin, LITELLM_ADMIN_URL: "ftp://litellm" }).message).not.toContain(admin.LITELLM_MASTER_KEY);
    expect(settingError({ ...valid, ...admin, LITELLM_ADMIN_URL: "http://admin:pw@litellm:4000" }).message).toBe(
      "invalid setting LITELLM_ADMIN_URL: no user or password in the URL; the master key is the credential",
    );
  });

  it("refuses a master key that cannot go into an HTTP header as it is, naming the setting and never the key", () => {
    const admin = { LITELLM_ADMIN_URL: "http://litellm:4000", ENFORCE_ON_DEPLETED: "key" };
    expect(parseEnv({ ...valid, ...admin, LITELLM_MASTER_KEY: "sk-Abc_123.+/=~" }).litellmAdmin?.masterKey).toBe("sk-Abc_123.+/=~");
    const hostile = ["sk-a\nb", "sk-a\r\nX-Injected: 1", "sk-a\u0000b", "sk-a\tb", " sk-leading", "sk-trailing ", "sk-in side", "sk-ключ", "sk-é", "sk-\u{1F511}", `sk-${"k".repeat(4094)}`];
    for (const key of hostile) {
      const error = settingError({ ...valid, ...admin, LITELLM_MASTER_KEY: key });
      expect(error.message).toBe(
        "invalid setting LITELLM_MASTER_KEY: 1 to 4096 visible ASCII characters (no space, control character or other letter): it is sent in an HTTP header",
      );
      expect(error.message).not.toContain(key.trim());
    }
    // Enforcement off: a bad key is refused all the same, as workers still deliver actions decided before.
    expect(refused({ ...valid, LITELLM_ADMIN_URL: admin.LITELLM_ADMIN_URL, LITELLM_MASTER_KEY: "sk-a\nb" })).toEqual(["LITELLM_MASTER_KEY"]);
  });

  it("refuses a LiteLLM admin URL that does not parse with the setting's own line", () => {
    for (const bad of ["not a url", "litellm:4000", "http//litellm", "http://", "://", "http://[::1", "\u0000"]) {
      expect(settingError({ ...valid, LITELLM_ADMIN_URL: bad }).message).toBe("invalid setting LITELLM_ADMIN_URL: an http or https URL, such as http://litellm:4000");
    }
  });

  it("binds HOST, an IP address: every interface unless set", () => {
    expect(parseEnv(valid).host).toBe("0.0.0.0");
    expect(parseEnv({ ...valid, HOST: "" }).host).toBe("0.0.0.0");
    for (const host of ["127.0.0.1", "10.1.2.3", "::", "::1", "fe80::1%eth0"]) expect(parseEnv({ ...valid, HOST: host }).host).toBe(host);
    for (const bad of ["localhost", "example.com", "[::1]", "0.0.0.0:8080", "256.1.1.1", "127.0.0.1 ", "*"]) {
      expect(settingError({ ...valid, HOST: bad }).message).toBe("invalid setting HOST: an IP address to listen on, such as 0.0.0.0, 127.0.0.1 or ::");
    }
  });

  it("lets npm run dev run only with NODE_ENV unset, development or test, in any case", () => {
    for (const allowed of [undefined, "", "development", "Development", "TEST", "test"]) expect(nodeEnvAllowsDev(allowed)).toBe(true);
    for (const nodeEnv of ["production", "Production", "PRODUCTION", "prod", "staging", "dev", " development", "production\n"]) {
      expect(nodeEnvAllowsDev(nodeEnv)).toBe(false);
    }
  });

  it("answers any hostile value of any setting, in any role, with that setting's one line, never a throw of its own or the value echoed", () => {
    const hostile = ["not a url", "\n", "\u0000", "-1", "0", "1e999", "NaN", "💥", "a".repeat(100_000), "http://[::1", "%zz", "{}", ",,,"];
    for (const groups of Object.values(ROLES)) {
      for (const setting of SETTING_NAMES) {
        for (const value of hostile) {
          let outcome: unknown;
          try {
            outcome = parseSettings(groups, { ...valid, [setting]: value });
          } catch (error) {
            outcome = error;
          }
          if (!(outcome instanceof Error)) continue;
          expect(outcome, `${setting}=${JSON.stringify(value.slice(0, 20))}`).toBeInstanceOf(InvalidSettingError);
          expect((outcome as InvalidSettingError).problems.map((problem) => problem.setting)).toEqual([setting]);
          expect(outcome.message).not.toContain("\n");
          if (value.length > 100) expect(outcome.message).not.toContain(value);
        }
      }
    }
  });
});

describe("settings by role", () => {
  const stores = { DATABASE_URL: valid.DATABASE_URL, REDIS_URL: valid.REDIS_URL };

  it("docs/reference/configuration.md lists what each role reads, as the code reads it", () => {
    const page = readFileSync(new URL("../../docs/reference/configuration.md", import.meta.url), "utf8");
    const listed = Object.fromEntries(
      [...page.matchAll(/^\| `([\w-]+)` \| [^|]+ \| (.+) \|$/gm)]
        .filter(([, role]) => role! in ROLES)
        .map(([, role, settings]) => [role, [...settings!.matchAll(/`(\w+)`/g)].map(([, name]) => name)]),
    );
    expect(listed).toEqual(Object.fromEntries(Object.entries(ROLES).map(([role, groups]) => [role, settingsReadBy(groups)])));
  });

  it("a worker reads neither the receiver's tokens nor its limits", () => {
    expect(parseSettings(ROLES.worker, stores)).toMatchObject({ databaseUrl: stores.DATABASE_URL, pricingFile: "config/pricing.yaml" });
    const receiversOnly = { PORT: "eighty", INGEST_TOKENS: "short", ADMIN_TOKEN: "tiny", QUEUE_UI_TOKEN: "x", MAX_BODY_BYTES: "0", QUEUE_REPLICA_ACKS: "-1" };
    expect(parseSettings(ROLES.worker, { ...stores, ...receiversOnly })).not.toHaveProperty("ingestTokens");
    expect(refused(receiversOnly, ROLES.receiver)).toEqual(["DATABASE_URL", "REDIS_URL", "QUEUE_REPLICA_ACKS", "PORT", "INGEST_TOKENS", "ADMIN_TOKEN", "QUEUE_UI_TOKEN", "MAX_BODY_BYTES"]);
  });

  it("a receiver reads none of what only workers do: enforcement's delivery, the backfill, the sweeps", () => {
    const workersOnly = { ENFORCE_ON_DEPLETED: "key", METRICS_PORT: "x", CREDIT_EXPIRY_INTERVAL: "1h", LITELLM_DATABASE_URL: "mysql://x", WORKER_LOCK_DURATION_MS: "0" };
    expect(parseSettings(ROLES.receiver, { ...valid, ...workersOnly })).toMatchObject({ enforcement: { blocks: ["key"] } });
    expect(refused({ ...valid, ...workersOnly }, ROLES.worker)).toEqual([
      "METRICS_PORT",
      "LITELLM_DATABASE_URL",
      "LITELLM_ADMIN_URL",
      "LITELLM_MASTER_KEY",
      "CREDIT_EXPIRY_INTERVAL",
      "WORKER_LOCK_DURATION_MS",
    ]);
  });

  it("migrations and each ops command read only the groups they name", () => {
    expect(parseSettings(ROLES.migrate, { DATABASE_URL: valid.DATABASE_URL, INGEST_TOKENS: "short" })).toEqual({ databaseUrl: valid.DATABASE_URL });
    // ops reconcile, books head: the database alone, no Redis.
    expect(parseSettings(["database"], { DATABASE_URL: valid.DATABASE_URL })).toEqual({ databaseUrl: valid.DATABASE_URL });
    // ops queues: Redis alone.
    expect(parseSettings(["queue"], { REDIS_URL: valid.REDIS_URL })).toEqual({ redis: { url: valid.REDIS_URL }, queuePrefix: "spend-ingest" });
    expect(parseSettings(["pricing", "payer"], {})).toEqual({ pricingFile: "config/pricing.yaml", billingAccountFrom: ["key_metadata", "team", "user"] });
    expect(refused({ ...valid, LITELLM_DATABASE_URL: "" }, ["database", "litellmDatabase"])).toEqual(["LITELLM_DATABASE_URL"]);
  });

  it("lists every problem at once, in the order the settings are declared, one line each", () => {
    expect(settingError({}).lines).toEqual([
      "invalid setting DATABASE_URL: is required",
      "invalid setting REDIS_URL: is required (or REDIS_CLUSTER_NODES for a Redis Cluster)",
      "invalid setting INGEST_TOKENS: is required",
      "invalid setting ADMIN_TOKEN: is required",
    ]);
    // A check across settings runs once both parse, and is listed with the rest.
    const mixed = { ...valid, DATABASE_URL: "mysql://x", QUEUE_UI_TOKEN: valid.ADMIN_TOKEN, ENFORCE_ON_DEPLETED: "team", LOG_LEVEL: "loud" };
    expect(refused(mixed)).toEqual(["DATABASE_URL", "QUEUE_UI_TOKEN", "LITELLM_ADMIN_URL", "LITELLM_MASTER_KEY", "LOG_LEVEL"]);
  });

  it("takes an empty value as unset: a required setting is missing, one with a default takes it", () => {
    const empty = { DATABASE_URL: "", REDIS_URL: "", INGEST_TOKENS: "", ADMIN_TOKEN: "" };
    expect(settingError(empty).lines).toEqual(settingError({}).lines);
    const defaults = { LOG_LEVEL: "", MAX_BODY_BYTES: "", QUEUE_PREFIX: "", PRICING_FILE: "", CREDIT_EXPIRY_INTERVAL: "", ENFORCE_BELOW: "" };
    expect(parseEnv({ ...valid, ...defaults })).toMatchObject(parseEnv(valid));
  });

  it("takes REDIS_URL's path only as a database index", () => {
    for (const url of ["redis://redis:6379", "redis://redis:6379/", "redis://redis:6379/15", "rediss://:pw@redis:6380/2"]) {
      expect(parseSettings(["queue"], { REDIS_URL: url }).redis).toEqual({ url });
    }
    for (const url of ["redis://redis:6379/abc", "redis://redis:6379/1/2", "redis://redis:6379/3x", "redis://redis:6379/-1"]) {
      expect(settingError({ REDIS_URL: url }, ["queue"]).lines).toEqual([
        "invalid setting REDIS_URL: the database index after the port is a whole number, such as redis://redis:6379/0",
      ]);
    }
  });

  it("gives every setting to some role", () => {
    const read = new Set(Object.values(ROLES).flatMap((groups) => settingsReadBy(groups)));
    expect(SETTING_NAMES.filter((setting) => !read.has(setting))).toEqual([]);
  });
});
