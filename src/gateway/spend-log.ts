import pg from "pg";

/**
 * Read-only access to LiteLLM's own database, where its proxy keeps a row for every call it
 * served in "LiteLLM_SpendLogs" (Prisma's quoted camel-case names). Every query has a timeout:
 * a stuck gateway database must never stall billing.
 */
export type SpendLogRow = {
  request_id: string;
  call_type: string | null;
  api_key: string | null;
  spend: number | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  startTime: Date;
  endTime: Date | null;
  model: string | null;
  model_group: string | null;
  custom_llm_provider: string | null;
  user: string | null;
  team_id: string | null;
  organization_id: string | null;
  end_user: string | null;
  status: string | null;
  cache_hit: string | null;
  metadata: unknown;
  /** From the request LiteLLM logged, only what prices the call: never its messages. */
  service_tier: string | null;
  search_context_size: string | null;
  /** Whether the row says which service tier the call had (false: LiteLLM kept no request and no tier). */
  tier_known: boolean;
  /** The key's own metadata (its key tables), where LiteLLM keeps it; the spend log does not. */
  key_metadata: unknown;
};

const STATEMENT_TIMEOUT_MS = 30_000;

/** A failure reading LiteLLM's database, told apart from one of our own. */
export class SpendLogError extends Error {
  constructor(cause: unknown) {
    super((cause as Error).message ?? String(cause), { cause });
    this.name = "SpendLogError";
  }
}

async function reading<T>(query: Promise<T>): Promise<T> {
  try {
    return await query;
  } catch (error) {
    throw new SpendLogError(error);
  }
}

export function createSpendLogPool(url: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: 2,
    application_name: "spend-ingest gateway reconcile",
    connectionTimeoutMillis: 10_000,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    // The server's timeout does nothing for a server or network that hangs: the client gives up too.
    query_timeout: STATEMENT_TIMEOUT_MS + 5_000,
    keepAlive: true,
    // Nothing here writes to LiteLLM's database; the server refuses it if something tried.
    options: "-c default_transaction_read_only=on",
    types: { getTypeParser: (oid: number, format?: "text" | "binary") => (oid === TIMESTAMP_OID ? parseUtcTimestamp : pg.types.getTypeParser(oid, format as "text")) },
  });
  pool.on("error", () => {});
  return pool;
}

export type SpendLogCursor = { startTime: Date; requestId: string } | null;

/**
 * What LiteLLM's database holds, read once per run from information_schema: its tables grew
 * column by column over the versions we support, and a read-only role may see only some of them.
 * The reader asks for what is there and reads a missing column as NULL (see readSpendLogPage).
 */
export type GatewaySchema = {
  /** Columns of "LiteLLM_SpendLogs" this role may read. */
  spendLog: ReadonlySet<string>;
  /** Key tables this role may read, newest first in the order the reader looks keys up. */
  keys: { active: boolean; deleted: boolean; rotated: boolean };
};

/**
 * The spend log's columns in LiteLLM's first migration (20250326162113_baseline, March 2025):
 * the oldest schema supported. Without any of them the reader cannot tell what a call was.
 */
export const REQUIRED_SPEND_LOG_COLUMNS = [
  "request_id", "call_type", "api_key", "spend", "prompt_tokens", "completion_tokens", "startTime", "endTime",
  "model", "model_group", "custom_llm_provider", "user", "team_id", "end_user", "cache_hit", "metadata", "response",
] as const;

const KEY_TABLES = {
  active: { table: "LiteLLM_VerificationToken", columns: ["token", "metadata"] },
  // Since migration 20251219110931: a deleted key's row, kept with its metadata.
  deleted: { table: "LiteLLM_DeletedVerificationToken", columns: ["token", "metadata", "deleted_at"] },
  // Since migration 20260203120000: a rotated key's old hash and the key that replaced it.
  rotated: { table: "LiteLLM_DeprecatedVerificationToken", columns: ["token", "active_token_id"] },
} as const;

/** Reads which tables and columns LiteLLM's database has (bounded by the pool's timeouts). */
export async function readGatewaySchema(pool: pg.Pool): Promise<GatewaySchema> {
  const tables = ["LiteLLM_SpendLogs", ...Object.values(KEY_TABLES).map((key) => key.table)];
  // The table the search path resolves, as every query here names it; only columns this role may read.
  const { rows } = await reading(pool.query<{ table_name: string; column_name: string }>(
    `SELECT c.table_name, c.column_name
     FROM information_schema.columns c
     JOIN pg_class k ON k.oid = to_regclass(quote_ident(c.table_name))
     JOIN pg_namespace n ON n.oid = k.relnamespace AND n.nspname = c.table_schema
     WHERE c.table_name = ANY($1::text[]) AND has_column_privilege(k.oid, c.column_name, 'SELECT')`,
    [tables],
  ));
  const columns = (table: string) => new Set(rows.filter((row) => row.table_name === table).map((row) => row.column_name));
  const spendLog = columns("LiteLLM_SpendLogs");
  const lacking = REQUIRED_SPEND_LOG_COLUMNS.filter((column) => !spendLog.has(column));
  if (lacking.length > 0) {
    throw new SpendLogError(
      new Error(
        spendLog.size === 0
          ? `no "LiteLLM_SpendLogs" table this role can read`
          : `"LiteLLM_SpendLogs" lacks ${lacking.join(", ")} (a LiteLLM older than its 20250326162113_baseline migration, or no SELECT on them)`,
      ),
    );
  }
  const readable = (key: keyof typeof KEY_TABLES) => {
    const present = columns(KEY_TABLES[key].table);
    return KEY_TABLES[key].columns.every((column) => present.has(column));
  };
  return { spendLog, keys: { active: readable("active"), deleted: readable("deleted"), rotated: readable("rotated") } };
}

/**
 * A spend-log column where the database has it, else what stands for it. Each later column
 * and what its absence means:
 * - `organization_id` (20251122125322, LiteLLM 1.80.6): NULL; the organisation is read from the
 *   metadata's `user_api_key_org_id`, which LiteLLM wrote before the column existed;
 * - `status` (20250508072103): the metadata's `status`, where LiteLLM kept it before;
 * - `proxy_server_request` (20250425182129): NULL, so the service tier the call asked for is
 *   unknown unless the response's usage says it (readSpendLogPage).
 */
function spendLogColumn(schema: GatewaySchema, column: "organization_id" | "status" | "proxy_server_request"): string {
  if (schema.spendLog.has(column)) return `s.${column}`;
  return { organization_id: "NULL::text", status: "s.metadata->>'status'", proxy_server_request: "NULL::jsonb" }[column];
}

/**
 * The key's own metadata, where LiteLLM keeps it: the live key; else the key as it was deleted;
 * else, for a key rotated since the call, the key that replaced it (LiteLLM keeps the old hash
 * until its grace period ends), live or deleted. NULL: no table this version has knows the key.
 */
function keyMetadataColumn(schema: GatewaySchema): string {
  const { keys } = schema;
  const byHash = (hash: string) =>
    [
      keys.active ? `(SELECT t.metadata FROM "LiteLLM_VerificationToken" t WHERE t.token = ${hash})` : null,
      keys.deleted
        ? `(SELECT d.metadata FROM "LiteLLM_DeletedVerificationToken" d WHERE d.token = ${hash} ORDER BY d.deleted_at DESC LIMIT 1)`
        : null,
    ].filter((lookup) => lookup !== null);
  const lookups = byHash("s.api_key");
  if (keys.rotated && lookups.length > 0) {
    lookups.push(
      `(SELECT COALESCE(${byHash("r.active_token_id").join(", ")}) FROM "LiteLLM_DeprecatedVerificationToken" r WHERE r.token = s.api_key)`,
    );
  }
  return lookups.length === 0 ? "NULL::jsonb" : `COALESCE(${lookups.join(", ")})`;
}

/** One page of rows with `since <= "startTime" < until`, in ("startTime", request_id) order after `after`. */
export async function readSpendLogPage(
  pool: pg.Pool,
  schema: GatewaySchema,
  window: { since: Date; until: Date },
  after: SpendLogCursor,
  limit: number,
  withKeyMetadata: boolean,
): Promise<SpendLogRow[]> {
  const request = spendLogColumn(schema, "proxy_server_request");
  // Only a request LiteLLM kept (store_prompts_in_spend_logs) says the call asked for no tier.
  const requestKept = `(jsonb_typeof(${request}) = 'object' AND ${request} <> '{}'::jsonb)`;
  // The tier the call asked for, as its callback carries it; else the tier the provider reported
  // (the response LiteLLM kept, its usage object), which LiteLLM's own cost calculator also reads.
  const serviceTier = `COALESCE(${request}->>'service_tier', s.response->>'service_tier',
              s.metadata->'usage_object'->>'service_tier', s.metadata->'additional_usage_values'->>'service_tier')`;
  const { rows } = await reading(pool.query<SpendLogRow>(
    `SELECT s.request_id, s.call_type, s.api_key, s.spend, s.prompt_tokens, s.completion_tokens,
            s."startTime", s."endTime", s.model, s.model_group, s.custom_llm_provider, s."user", s.team_id,
            ${spendLogColumn(schema, "organization_id")} AS organization_id, s.end_user,
            ${spendLogColumn(schema, "status")} AS status, s.cache_hit, s.metadata,
            ${withKeyMetadata ? keyMetadataColumn(schema) : "NULL::jsonb"} AS key_metadata,
            ${serviceTier} AS service_tier,
            ${request}->'web_search_options'->>'search_context_size' AS search_context_size,
            (${requestKept} OR ${serviceTier} IS NOT NULL) AS tier_known
     FROM "LiteLLM_SpendLogs" s
     WHERE s."startTime" >= $1 AND s."startTime" < $2
       AND ($3::timestamp IS NULL OR (s."startTime", s.request_id) > ($3::timestamp, $4::text))
     ORDER BY s."startTime", s.request_id
     LIMIT $5`,
    [toUtcTimestamp(window.since), toUtcTimestamp(window.until), after ? toUtcTimestamp(after.startTime) : null, after?.requestId ?? null, limit],
  ));
  return rows;
}

/** Which of `requestIds` LiteLLM has a row for. */
export async function spendLogRowsExist(pool: pg.Pool, requestIds: string[]): Promise<Set<string>> {
  if (requestIds.length === 0) return new Set();
  const { rows } = await reading(pool.query<{ request_id: string }>(
    `SELECT request_id FROM "LiteLLM_SpendLogs" WHERE request_id = ANY($1::text[])`,
    [requestIds],
  ));
  return new Set(rows.map((row) => row.request_id));
}

/** Whether any key table LiteLLM keeps key metadata in can be read. */
export function hasKeyMetadata(schema: GatewaySchema): boolean {
  return schema.keys.active || schema.keys.deleted;
}

// Prisma's timestamp(3) columns hold UTC without a zone: read and compare them as such.
const TIMESTAMP_OID = 1114;

function parseUtcTimestamp(text: string): Date {
  return new Date(`${text.replace(" ", "T")}Z`);
}

function toUtcTimestamp(time: Date): string {
  return time.toISOString().replace("T", " ").replace("Z", "");
}
