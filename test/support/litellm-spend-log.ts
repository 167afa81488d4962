import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { adminQuery, databaseUrlFor } from "./test-env.js";

/**
 * A stand-in for LiteLLM's own PostgreSQL database, with its spend-log and key tables as LiteLLM's
 * Prisma migrations create them (quoted camel-case names, timestamp(3) in UTC), at one of two
 * versions: `baseline`, its first migration (20250326162113_baseline, March 2025: the oldest the
 * docs claim, before status, proxy_server_request, organization_id and the deleted and rotated key
 * tables), and `newest` (its current schema.prisma, with the deleted and rotated key tables). It is a real database; only
 * LiteLLM's proxy, which would write it, is not here.
 */
export type LitellmVersion = "baseline" | "newest";

export type LitellmDatabase = {
  url: string;
  version: LitellmVersion;
  pool: pg.Pool;
  insert: (rows: SpendLogInsert[]) => Promise<void>;
  /** A key LiteLLM issued, with its admin-set metadata. */
  createKey: (token: string, metadata: Record<string, unknown>) => Promise<void>;
  /** As LiteLLM's /key/delete does since 20251219110931: the row moves to LiteLLM_DeletedVerificationToken. */
  deleteKey: (token: string) => Promise<void>;
  /** As LiteLLM's key rotation does since 20260203120000: the row takes the new hash, the old one is kept until revoke_at. */
  rotateKey: (token: string, newToken: string) => Promise<void>;
};

export type SpendLogInsert = {
  request_id: string;
  call_type?: string;
  api_key?: string;
  spend: number;
  prompt_tokens: number;
  completion_tokens: number;
  startTime: Date;
  endTime: Date;
  model: string | null;
  model_group?: string | null;
  custom_llm_provider?: string | null;
  user?: string;
  team_id?: string;
  organization_id?: string;
  end_user?: string;
  status?: "success" | "failure";
  cache_hit?: "True" | "False";
  metadata: Record<string, unknown>;
  proxy_server_request?: Record<string, unknown>;
};

// The spend log's columns in LiteLLM's baseline migration.
const BASELINE_SPEND_LOGS = `
  request_id text NOT NULL, call_type text NOT NULL, api_key text NOT NULL DEFAULT '', spend double precision NOT NULL DEFAULT 0.0,
  total_tokens integer NOT NULL DEFAULT 0, prompt_tokens integer NOT NULL DEFAULT 0, completion_tokens integer NOT NULL DEFAULT 0,
  "startTime" timestamp(3) NOT NULL, "endTime" timestamp(3) NOT NULL, "completionStartTime" timestamp(3),
  model text NOT NULL DEFAULT '', model_id text DEFAULT '', model_group text DEFAULT '', custom_llm_provider text DEFAULT '',
  api_base text DEFAULT '', "user" text DEFAULT '', metadata jsonb DEFAULT '{}', cache_hit text DEFAULT '', cache_key text DEFAULT '',
  request_tags jsonb DEFAULT '[]', team_id text, end_user text, requester_ip_address text,
  messages jsonb DEFAULT '{}', response jsonb DEFAULT '{}'`;

const BASELINE_TOKEN = `
  token text NOT NULL, key_name text, key_alias text, soft_budget_cooldown boolean NOT NULL DEFAULT false,
  spend double precision NOT NULL DEFAULT 0.0, expires timestamp(3), models text[], aliases jsonb NOT NULL DEFAULT '{}',
  config jsonb NOT NULL DEFAULT '{}', user_id text, team_id text, permissions jsonb NOT NULL DEFAULT '{}', max_parallel_requests integer,
  metadata jsonb NOT NULL DEFAULT '{}', blocked boolean, tpm_limit bigint, rpm_limit bigint, max_budget double precision,
  budget_duration text, budget_reset_at timestamp(3), allowed_cache_controls text[] DEFAULT ARRAY[]::text[],
  model_spend jsonb NOT NULL DEFAULT '{}', model_max_budget jsonb NOT NULL DEFAULT '{}', budget_id text, organization_id text,
  created_at timestamp(3) DEFAULT CURRENT_TIMESTAMP, created_by text, updated_at timestamp(3) DEFAULT CURRENT_TIMESTAMP, updated_by text`;

// Added by later migrations (the key tables' other later columns are not read, and left out).
const NEWER_TOKEN = `, allowed_routes text[] DEFAULT ARRAY[]::text[], object_permission_id text, rotation_count integer DEFAULT 0,
  auto_rotate boolean DEFAULT false, rotation_interval text, last_rotation_at timestamp(3), key_rotation_at timestamp(3)`;

const SCHEMAS: Record<LitellmVersion, string> = {
  baseline: `
CREATE TABLE "LiteLLM_SpendLogs" (${BASELINE_SPEND_LOGS}, CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY (request_id));
CREATE INDEX "LiteLLM_SpendLogs_startTime_idx" ON "LiteLLM_SpendLogs" ("startTime");
CREATE INDEX "LiteLLM_SpendLogs_end_user_idx" ON "LiteLLM_SpendLogs" (end_user);
CREATE TABLE "LiteLLM_VerificationToken" (${BASELINE_TOKEN}, CONSTRAINT "LiteLLM_VerificationToken_pkey" PRIMARY KEY (token));
`,
  newest: `
CREATE TABLE "LiteLLM_SpendLogs" (${BASELINE_SPEND_LOGS}, organization_id text, session_id text, status text,
  mcp_namespaced_tool_name text, agent_id text, proxy_server_request jsonb DEFAULT '{}',
  CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY (request_id));
CREATE INDEX "LiteLLM_SpendLogs_startTime_idx" ON "LiteLLM_SpendLogs" ("startTime");
CREATE INDEX "LiteLLM_SpendLogs_startTime_request_id_idx" ON "LiteLLM_SpendLogs" ("startTime", request_id);
CREATE INDEX "LiteLLM_SpendLogs_end_user_idx" ON "LiteLLM_SpendLogs" (end_user);
CREATE INDEX "LiteLLM_SpendLogs_session_id_idx" ON "LiteLLM_SpendLogs" (session_id);
CREATE TABLE "LiteLLM_VerificationToken" (${BASELINE_TOKEN}${NEWER_TOKEN}, CONSTRAINT "LiteLLM_VerificationToken_pkey" PRIMARY KEY (token));
CREATE TABLE "LiteLLM_DeletedVerificationToken" (id text NOT NULL, ${BASELINE_TOKEN}${NEWER_TOKEN},
  deleted_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, deleted_by text, deleted_by_api_key text, litellm_changed_by text,
  CONSTRAINT "LiteLLM_DeletedVerificationToken_pkey" PRIMARY KEY (id));
CREATE INDEX "LiteLLM_DeletedVerificationToken_token_idx" ON "LiteLLM_DeletedVerificationToken" (token);
CREATE TABLE "LiteLLM_DeprecatedVerificationToken" (id text NOT NULL, token text NOT NULL, active_token_id text NOT NULL,
  revoke_at timestamp(3) NOT NULL, created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "LiteLLM_DeprecatedVerificationToken_pkey" PRIMARY KEY (id));
CREATE UNIQUE INDEX "LiteLLM_DeprecatedVerificationToken_token_key" ON "LiteLLM_DeprecatedVerificationToken" (token);
`,
};

export function useLitellmDatabase(version: LitellmVersion = "newest"): LitellmDatabase {
  const name = `litellm_t_${randomBytes(6).toString("hex")}`;
  const database = { url: databaseUrlFor(name), version, pool: undefined as unknown as pg.Pool } as LitellmDatabase;
  beforeAll(async () => {
    await adminQuery(`CREATE DATABASE ${name}`);
    database.pool = new pg.Pool({ connectionString: database.url, max: 4 });
    database.pool.on("error", () => {});
    await database.pool.query(SCHEMAS[version]);
    database.insert = (rows) => insertSpendLogs(database.pool, version, rows);
    database.createKey = async (token, metadata) => {
      await database.pool.query(`INSERT INTO "LiteLLM_VerificationToken" (token, metadata) VALUES ($1, $2)`, [token, JSON.stringify(metadata)]);
    };
    database.deleteKey = async (token) => {
      await database.pool.query(
        `WITH gone AS (DELETE FROM "LiteLLM_VerificationToken" WHERE token = $1 RETURNING token, metadata)
         INSERT INTO "LiteLLM_DeletedVerificationToken" (id, token, metadata) SELECT gen_random_uuid()::text, token, metadata FROM gone`,
        [token],
      );
    };
    database.rotateKey = async (token, newToken) => {
      await database.pool.query(`UPDATE "LiteLLM_VerificationToken" SET token = $2 WHERE token = $1`, [token, newToken]);
      await database.pool.query(
        `INSERT INTO "LiteLLM_DeprecatedVerificationToken" (id, token, active_token_id, revoke_at)
         VALUES (gen_random_uuid()::text, $1, $2, now() + interval '1 day')`,
        [token, newToken],
      );
    };
  });
  afterAll(async () => {
    await database.pool?.end();
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  return database;
}

async function insertSpendLogs(pool: pg.Pool, version: LitellmVersion, rows: SpendLogInsert[]): Promise<void> {
  const utc = (time: Date) => time.toISOString().replace("T", " ").replace("Z", "");
  const columns: Array<[string, string, (row: SpendLogInsert) => unknown]> = [
    ["request_id", "text", (row) => row.request_id],
    ["call_type", "text", (row) => row.call_type ?? "acompletion"],
    ["api_key", "text", (row) => row.api_key ?? ""],
    ["spend", "float8", (row) => row.spend],
    ["prompt_tokens", "int", (row) => row.prompt_tokens],
    ["completion_tokens", "int", (row) => row.completion_tokens],
    ["total_tokens", "int", (row) => row.prompt_tokens + row.completion_tokens],
    ['"startTime"', "timestamp", (row) => utc(row.startTime)],
    ['"endTime"', "timestamp", (row) => utc(row.endTime)],
    ["model", "text", (row) => row.model ?? ""],
    ["model_group", "text", (row) => row.model_group ?? ""],
    ["custom_llm_provider", "text", (row) => row.custom_llm_provider ?? ""],
    ['"user"', "text", (row) => row.user ?? ""],
    ["team_id", "text", (row) => row.team_id ?? null],
    ["end_user", "text", (row) => row.end_user ?? ""],
    ["cache_hit", "text", (row) => row.cache_hit ?? "False"],
    ["metadata", "jsonb", (row) => JSON.stringify(row.metadata)],
  ];
  // What the baseline's LiteLLM could not write: it kept the status in the metadata only.
  if (version === "newest") {
    columns.push(
      ["organization_id", "text", (row) => row.organization_id ?? null],
      ["status", "text", (row) => row.status ?? "success"],
      ["proxy_server_request", "jsonb", (row) => JSON.stringify(row.proxy_server_request ?? {})],
    );
  }
  for (let start = 0; start < rows.length; start += 1000) {
    const page = rows.slice(start, start + 1000);
    await pool.query(
      `INSERT INTO "LiteLLM_SpendLogs" (${columns.map(([name]) => name).join(", ")})
       SELECT * FROM unnest(${columns.map(([, type], index) => `$${index + 1}::${type}[]`).join(", ")})`,
      columns.map(([, , read]) => page.map(read)),
    );
  }
}

/** The spend-log row LiteLLM writes for the call a callback payload describes. */
export function spendLogRowOf(payload: Record<string, unknown>, startTime: Date): SpendLogInsert {
  const metadata = payload.metadata as Record<string, unknown>;
  return {
    request_id: String(payload.id),
    call_type: String(payload.call_type ?? "acompletion"),
    spend: Number(payload.response_cost ?? 0),
    prompt_tokens: Number(payload.prompt_tokens),
    completion_tokens: Number(payload.completion_tokens),
    startTime,
    endTime: new Date(startTime.getTime() + 500),
    model: (payload.model as string | null) ?? null,
    model_group: (payload.model_group as string | null) ?? null,
    custom_llm_provider: (payload.custom_llm_provider as string | null) ?? null,
    team_id: (metadata.user_api_key_team_id as string | undefined) ?? undefined,
    status: payload.status === "failure" ? "failure" : "success",
    cache_hit: payload.cache_hit === true ? "True" : "False",
    // LiteLLM's spend-log metadata: who called, the usage detail and the rates used.
    metadata: {
      user_api_key_team_id: metadata.user_api_key_team_id ?? null,
      user_api_key_user_id: metadata.user_api_key_user_id ?? null,
      user_api_key_org_id: metadata.user_api_key_org_id ?? null,
      spend_logs_metadata: metadata.spend_logs_metadata ?? null,
      usage_object: metadata.usage_object ?? null,
      model_map_information: payload.model_map_information ?? null,
      status: payload.status ?? "success",
    },
    // The request as the proxy logged it; billing reads only its tiers from it.
    proxy_server_request: { model: payload.model_group || payload.model, messages: [{ role: "user", content: "not read" }], ...(payload.model_parameters as object) },
  };
}
