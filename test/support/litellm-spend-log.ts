import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { adminQuery, databaseUrlFor } from "./test-env.js";

/**
 * A stand-in for LiteLLM's own PostgreSQL database, with its spend-log and key tables as LiteLLM's
 * Prisma schema creates them (quoted camel-case names, timestamp(3) in UTC). It is a real
 * database; only LiteLLM's proxy, which would write it, is not here.
 */
export type LitellmDatabase = { url: string; pool: pg.Pool; insert: (rows: SpendLogInsert[]) => Promise<void> };

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

const SCHEMA = `
CREATE TABLE "LiteLLM_SpendLogs" (
  request_id text PRIMARY KEY, call_type text NOT NULL, api_key text NOT NULL DEFAULT '', spend double precision NOT NULL DEFAULT 0,
  total_tokens integer NOT NULL DEFAULT 0, prompt_tokens integer NOT NULL DEFAULT 0, completion_tokens integer NOT NULL DEFAULT 0,
  "startTime" timestamp(3) NOT NULL, "endTime" timestamp(3) NOT NULL, "completionStartTime" timestamp(3),
  model text NOT NULL DEFAULT '', model_id text DEFAULT '', model_group text DEFAULT '', custom_llm_provider text DEFAULT '',
  api_base text DEFAULT '', "user" text DEFAULT '', metadata jsonb DEFAULT '{}', cache_hit text DEFAULT '', cache_key text DEFAULT '',
  request_tags jsonb DEFAULT '[]', team_id text, organization_id text, end_user text, requester_ip_address text,
  messages jsonb DEFAULT '{}', response jsonb DEFAULT '{}', session_id text, status text, mcp_namespaced_tool_name text,
  proxy_server_request jsonb DEFAULT '{}'
);
CREATE INDEX "LiteLLM_SpendLogs_startTime_idx" ON "LiteLLM_SpendLogs" ("startTime");
CREATE TABLE "LiteLLM_VerificationToken" (token text PRIMARY KEY, key_alias text, metadata jsonb NOT NULL DEFAULT '{}', team_id text, user_id text);
`;

export function useLitellmDatabase(): LitellmDatabase {
  const name = `litellm_t_${randomBytes(6).toString("hex")}`;
  const database = { url: databaseUrlFor(name), pool: undefined as unknown as pg.Pool } as LitellmDatabase;
  beforeAll(async () => {
    await adminQuery(`CREATE DATABASE ${name}`);
    database.pool = new pg.Pool({ connectionString: database.url, max: 4 });
    database.pool.on("error", () => {});
    await database.pool.query(SCHEMA);
    database.insert = (rows) => insertSpendLogs(database.pool, rows);
  });
  afterAll(async () => {
    await database.pool?.end();
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  return database;
}

async function insertSpendLogs(pool: pg.Pool, rows: SpendLogInsert[]): Promise<void> {
  for (let start = 0; start < rows.length; start += 1000) {
    const page = rows.slice(start, start + 1000);
    const column = <T>(read: (row: SpendLogInsert) => T) => page.map(read);
    const utc = (time: Date) => time.toISOString().replace("T", " ").replace("Z", "");
    await pool.query(
      `INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, prompt_tokens, completion_tokens, total_tokens,
         "startTime", "endTime", model, model_group, custom_llm_provider, "user", team_id, organization_id, end_user, status,
         cache_hit, metadata, proxy_server_request)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::int[], $7::int[], $8::timestamp[],
         $9::timestamp[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
         $18::text[], $19::jsonb[], $20::jsonb[])`,
      [
        column((row) => row.request_id),
        column((row) => row.call_type ?? "acompletion"),
        column((row) => row.api_key ?? ""),
        column((row) => row.spend),
        column((row) => row.prompt_tokens),
        column((row) => row.completion_tokens),
        column((row) => row.prompt_tokens + row.completion_tokens),
        column((row) => utc(row.startTime)),
        column((row) => utc(row.endTime)),
        column((row) => row.model ?? ""),
        column((row) => row.model_group ?? ""),
        column((row) => row.custom_llm_provider ?? ""),
        column((row) => row.user ?? ""),
        column((row) => row.team_id ?? null),
        column((row) => row.organization_id ?? null),
        column((row) => row.end_user ?? ""),
        column((row) => row.status ?? "success"),
        column((row) => row.cache_hit ?? "False"),
        column((row) => JSON.stringify(row.metadata)),
        column((row) => JSON.stringify(row.proxy_server_request ?? {})),
      ],
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
      spend_logs_metadata: metadata.spend_logs_metadata ?? null,
      usage_object: metadata.usage_object ?? null,
      model_map_information: payload.model_map_information ?? null,
      status: payload.status ?? "success",
    },
    // The request as the proxy logged it; billing reads only its tiers from it.
    proxy_server_request: { model: payload.model_group || payload.model, messages: [{ role: "user", content: "not read" }], ...(payload.model_parameters as object) },
  };
}
