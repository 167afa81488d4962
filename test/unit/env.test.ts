import { describe, expect, it } from "vitest";
import { InvalidSettingError, nodeEnvAllowsDev, parseEnv, SETTING_NAMES } from "../../src/platform/config.js";

const valid = {
  DATABASE_URL: "postgres://postgres@127.0.0.1:5432/x",
  REDIS_URL: "redis://127.0.0.1:6379/3",
  INGEST_TOKENS: "ingest-token-aaaaaaaa, ingest-token-bbbbbbbb",
  ADMIN_TOKEN: "admin-token-aaaaaaaa",
};

function settingError(source: Record<string, string | undefined>): InvalidSettingError {
  try {
    parseEnv(source);
  } catch (error) {
    if (error instanceof InvalidSettingError) return error;
    throw error;
  }
  throw new Error("parseEnv accepted the source");
}

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
    expect(short.setting).toBe("INGEST_TOKENS");
    expect(short.message).not.toContain("short-secret");
    expect(settingError({ ...valid, ADMIN_TOKEN: "tiny" }).setting).toBe("ADMIN_TOKEN");
    expect(settingError({ ...valid, DATABASE_URL: "mysql://x" }).setting).toBe("DATABASE_URL");
    expect(settingError({ ...valid, PORT: "eighty" }).setting).toBe("PORT");
    expect(settingError({ ...valid, LOW_BALANCE_THRESHOLDS: "10,-5" }).setting).toBe("LOW_BALANCE_THRESHOLDS");
    expect(settingError({ ...valid, LOG_LEVEL: "loud" }).setting).toBe("LOG_LEVEL");
    expect(settingError({ ...valid, QUEUE_PREFIX: "a:b" }).setting).toBe("QUEUE_PREFIX");
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
    expect(settingError({ ...valid, REDIS_CLUSTER_NODES: "10.0.0.1" }).setting).toBe("REDIS_CLUSTER_NODES");
    expect(settingError({ ...valid, REDIS_CLUSTER_NODES: "a:70000" }).setting).toBe("REDIS_CLUSTER_NODES");
    expect(settingError({ ...valid, QUEUE_REPLICA_ACKS: "-1" }).setting).toBe("QUEUE_REPLICA_ACKS");
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
    expect(settingError({ ...valid, BILLING_ACCOUNT_FROM: "team,billing_account_id" }).setting).toBe("BILLING_ACCOUNT_FROM");
    expect(settingError({ ...valid, BILLING_ACCOUNT_FROM: "team,team" }).setting).toBe("BILLING_ACCOUNT_FROM");
    expect(settingError({ ...valid, BILLING_ACCOUNT_FROM: "" }).setting).toBe("BILLING_ACCOUNT_FROM");
  });

  it("serves the queue UI only with a token of its own, read-only unless actions are turned on", () => {
    expect(parseEnv(valid)).toMatchObject({ queueUiToken: undefined, queueUiActions: false });
    expect(parseEnv({ ...valid, QUEUE_UI_TOKEN: "" }).queueUiToken).toBeUndefined();
    expect(parseEnv({ ...valid, QUEUE_UI_TOKEN: "queue-ui-token-aaaa", QUEUE_UI_ACTIONS: "on" })).toMatchObject({
      queueUiToken: "queue-ui-token-aaaa",
      queueUiActions: true,
    });
    expect(settingError({ ...valid, QUEUE_UI_TOKEN: "short" }).setting).toBe("QUEUE_UI_TOKEN");
    expect(settingError({ ...valid, QUEUE_UI_TOKEN: valid.ADMIN_TOKEN }).setting).toBe("QUEUE_UI_TOKEN");
    expect(settingError({ ...valid, QUEUE_UI_TOKEN: "ingest-token-bbbbbbbb" }).setting).toBe("QUEUE_UI_TOKEN");
    expect(settingError({ ...valid, QUEUE_UI_ACTIONS: "yes" }).setting).toBe("QUEUE_UI_ACTIONS");
  });

  it("bounds every request and refuses a bytes-in-flight budget smaller than one body", () => {
    expect(parseEnv(valid)).toMatchObject({ maxItemsPerRequest: 4096, maxBytesInFlight: 96 * 1024 * 1024, maxConnections: 1000 });
    expect(settingError({ ...valid, MAX_BODY_BYTES: "1000", MAX_BYTES_IN_FLIGHT: "999" }).setting).toBe("MAX_BYTES_IN_FLIGHT");
    expect(settingError({ ...valid, MAX_ITEMS_PER_REQUEST: "0" }).setting).toBe("MAX_ITEMS_PER_REQUEST");
  });

  it("gives PORT to the receiver and METRICS_PORT, when set, to a worker; empty counts as unset", () => {
    expect(parseEnv(valid)).toMatchObject({ port: 8080, metricsPort: undefined });
    expect(parseEnv({ ...valid, PORT: "", METRICS_PORT: "" })).toMatchObject({ port: 8080, metricsPort: undefined });
    expect(parseEnv({ ...valid, PORT: "0", METRICS_PORT: "0" })).toMatchObject({ port: 0, metricsPort: 0 });
    expect(parseEnv({ ...valid, METRICS_PORT: "9464" }).metricsPort).toBe(9464);
    for (const bad of ["65536", "-1", "9464x", " 9464", "1.5"]) {
      expect(settingError({ ...valid, METRICS_PORT: bad }).message).toBe("invalid setting METRICS_PORT: a port number from 0 to 65535");
    }
    expect(settingError({ ...valid, PORT: "65536" }).setting).toBe("PORT");
  });

  it("reads LiteLLM's database and the backfill's durations", () => {
    expect(parseEnv(valid)).toMatchObject({ litellmDatabaseUrl: undefined, gatewayReconcileIntervalMs: 300_000, gatewayReconcileLagMs: 600_000 });
    expect(parseEnv({ ...valid, LITELLM_DATABASE_URL: "", GATEWAY_RECONCILE_INTERVAL: "90", GATEWAY_RECONCILE_LAG: "1h" })).toMatchObject({
      litellmDatabaseUrl: undefined,
      gatewayReconcileIntervalMs: 90_000,
      gatewayReconcileLagMs: 3_600_000,
    });
    expect(parseEnv({ ...valid, LITELLM_DATABASE_URL: "postgres://ro@litellm:5432/litellm" }).litellmDatabaseUrl).toBe("postgres://ro@litellm:5432/litellm");
    expect(settingError({ ...valid, LITELLM_DATABASE_URL: "mysql://x" }).setting).toBe("LITELLM_DATABASE_URL");
    expect(settingError({ ...valid, GATEWAY_RECONCILE_INTERVAL: "5 minutes" }).setting).toBe("GATEWAY_RECONCILE_INTERVAL");
    expect(parseEnv(valid)).toMatchObject({ creditsExpiringWithinMs: 7 * 86_400_000 });
    expect(parseEnv({ ...valid, CREDITS_EXPIRING_WITHIN: "36h" })).toMatchObject({ creditsExpiringWithinMs: 36 * 3_600_000 });
    expect(settingError({ ...valid, CREDITS_EXPIRING_WITHIN: "a week" }).setting).toBe("CREDITS_EXPIRING_WITHIN");
    expect(parseEnv(valid)).toMatchObject({ creditExpiryIntervalMs: 15_000 });
    expect(parseEnv({ ...valid, CREDIT_EXPIRY_INTERVAL: "1s" })).toMatchObject({ creditExpiryIntervalMs: 1_000 });
    expect(settingError({ ...valid, CREDIT_EXPIRY_INTERVAL: "1m" }).setting).toBe("CREDIT_EXPIRY_INTERVAL");
    expect(settingError({ ...valid, GATEWAY_RECONCILE_LAG: "0" }).setting).toBe("GATEWAY_RECONCILE_LAG");
  });

  it("reads LiteLLM's spend-log retention as a duration, unset or empty meaning not known", () => {
    expect(parseEnv(valid).litellmSpendLogRetentionMs).toBeUndefined();
    expect(parseEnv({ ...valid, LITELLM_SPEND_LOG_RETENTION: "" }).litellmSpendLogRetentionMs).toBeUndefined();
    expect(parseEnv({ ...valid, LITELLM_SPEND_LOG_RETENTION: "7d" }).litellmSpendLogRetentionMs).toBe(7 * 86_400_000);
    expect(parseEnv({ ...valid, LITELLM_SPEND_LOG_RETENTION: "36h" }).litellmSpendLogRetentionMs).toBe(36 * 3_600_000);
    for (const bad of ["0", "7 days", "-1d", "1w"]) {
      expect(settingError({ ...valid, LITELLM_SPEND_LOG_RETENTION: bad }).setting).toBe("LITELLM_SPEND_LOG_RETENTION");
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
    expect(settingError({ ...valid, ENFORCE_ON_DEPLETED: "key" }).message).toBe("invalid setting LITELLM_ADMIN_URL: is required when ENFORCE_ON_DEPLETED is not off");
    expect(settingError({ ...valid, ENFORCE_ON_DEPLETED: "key", LITELLM_ADMIN_URL: admin.LITELLM_ADMIN_URL }).setting).toBe("LITELLM_MASTER_KEY");
    for (const bad of ["on", "customer", "team,team", "off,team", ""]) {
      expect(settingError({ ...valid, ...admin, ENFORCE_ON_DEPLETED: bad }).setting).toBe("ENFORCE_ON_DEPLETED");
    }
    for (const bad of ["1.5", "1e3", "x", "99999999999999999"]) expect(settingError({ ...valid, ENFORCE_BELOW: bad }).setting).toBe("ENFORCE_BELOW");
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
    expect(settingError({ ...valid, LITELLM_ADMIN_URL: admin.LITELLM_ADMIN_URL, LITELLM_MASTER_KEY: "sk-a\nb" }).setting).toBe("LITELLM_MASTER_KEY");
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
    for (const refused of ["production", "Production", "PRODUCTION", "prod", "staging", "dev", " development", "production\n"]) {
      expect(nodeEnvAllowsDev(refused)).toBe(false);
    }
  });

  it("answers any hostile value of any setting with a setting's one line, never a throw of its own or the value echoed", () => {
    const hostile = ["not a url", "\n", "\u0000", "-1", "0", "1e999", "NaN", "💥", "a".repeat(100_000), "http://[::1", "%zz", "{}", ",,,"];
    for (const setting of SETTING_NAMES) {
      for (const value of hostile) {
        let outcome: unknown;
        try {
          outcome = parseEnv({ ...valid, [setting]: value });
        } catch (error) {
          outcome = error;
        }
        if (!(outcome instanceof Error)) continue;
        expect(outcome, `${setting}=${JSON.stringify(value.slice(0, 20))}`).toBeInstanceOf(InvalidSettingError);
        expect(outcome.message).not.toContain("\n");
        if (value.length > 100) expect(outcome.message).not.toContain(value);
      }
    }
  });
});
