import { describe, expect, it } from "vitest";
import { InvalidSettingError, parseEnv } from "../../src/config/env.js";

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
});
