import type pg from "pg";
import { MAX_ID_LENGTH } from "../usage/storable-text.js";
import { type GatewaySchema, reading } from "./spend-log.js";

/**
 * One page of LiteLLM's spend log, as billing reads it: only the fields billing needs, projected
 * in SQL, each bounded in size before it leaves the database, and the page bounded in bytes as
 * well as rows. The rest of a row (the caller's `spend_logs_metadata`, messages, responses) is
 * never transferred: a caller can make it any size.
 */
export type SpendLogRow = {
  /**
   * Whole, as the cursor needs it: LiteLLM's primary key bounds it (PostgreSQL keeps a btree
   * entry to about 2.7 kB compressed), and the reader refuses one over MAX_ID_LENGTH as a key.
   */
  request_id: string;
  /** "startTime" as PostgreSQL prints it, to the microsecond: exactly what the page order compares. */
  start_key: string;
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
  /** The metadata's fields billing reads, and only those (see BILLING_METADATA). */
  metadata: Record<string, unknown>;
  /** From the request LiteLLM logged, only what prices the call: never its messages. */
  service_tier: string | null;
  search_context_size: string | null;
  /** Whether the row says which service tier the call had (false: LiteLLM kept no request and no tier). */
  tier_known: boolean;
  /** Whether one of LiteLLM's key tables knows the call's key (false also where none can be read). */
  key_found: boolean;
  /** The key's own metadata (its key tables: admin-set), up to MAX_FIELD_BYTES; the spend log does not keep it. */
  key_metadata: unknown;
  /** Fields billing reads whole over MAX_FIELD_BYTES, by their path in the callback, with their size: the row is held, not billed. */
  oversized: Record<string, number>;
};

/** Where a page starts: after this row, in ("startTime", request_id) order. */
export type SpendLogCursor = { startKey: string; requestId: string } | null;

/**
 * A field billing reads whole (the usage object, the rates LiteLLM used) is a few kB; past this
 * it is not read, and its row is held rather than billed without it.
 */
export const MAX_FIELD_BYTES = 64 * 1024;

/**
 * An id or a label past this many bytes has more than 4 × MAX_ID_LENGTH code points, so it is no
 * id even after NFC (which composes at most 4 code points into one): it is cut to a stand-in that
 * every reader refuses or skips exactly as it would the whole value (see cutLabel).
 */
const MAX_LABEL_BYTES = 4 * 4 * MAX_ID_LENGTH;

/** What one page may transfer besides its row limit: a page stops at the row that passes it. */
export const PAGE_BYTES = 4 * 1024 * 1024;

/**
 * What one page's rows may hold as stored (jsonb columns, compressed, as pg_column_size reads them
 * without unpacking them): a page stops at the row that passes it, so the database never unpacks
 * a thousand rows of caller-set metadata and prompts to send a few fields of each (about 11 ms a
 * 4 MB row, measured on PostgreSQL 15: a thousand would pass the statement timeout every run).
 */
export const PAGE_STORED_BYTES = 16 * 1024 * 1024;

// JavaScript's String.prototype.trim whitespace (WhiteSpace and LineTerminator), which the
// account readers use to tell a blank value from a value.
const JS_BLANK = String.raw`'^[\u0009-\u000d\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*$'`;

/**
 * Text of any size as a reader of ids and labels takes it: itself up to MAX_LABEL_BYTES; past
 * that, blank (JavaScript's trim) stays blank and anything else stays no id, each longer than
 * MAX_ID_LENGTH, so an account source is skipped or refused and a label ignored as for the whole.
 */
function cutLabel(text: string): string {
  return `CASE WHEN octet_length(${text}) <= ${MAX_LABEL_BYTES} THEN ${text}
    WHEN ${text} ~ ${JS_BLANK} THEN repeat(' ', ${MAX_ID_LENGTH + 1})
    ELSE left(${text}, 64) || repeat(U&'\\2026', ${MAX_ID_LENGTH + 1}) END`;
}

/** A JSON value read as an id (text or a whole number), bounded as cutLabel bounds text. */
function cutId(value: string): string {
  return `CASE WHEN octet_length((${value})::text) <= ${MAX_LABEL_BYTES} THEN ${value}
    WHEN jsonb_typeof(${value}) = 'string' THEN to_jsonb(${cutLabel(`(${value} #>> '{}')`)})
    WHEN jsonb_typeof(${value}) = 'number' THEN '1e400'::jsonb
    ELSE '{}'::jsonb END`;
}

/** A JSON value billing reads whole: itself up to MAX_FIELD_BYTES, else NULL and named in `oversized`. */
function wholeField(value: string, bytes: string): string {
  return `CASE WHEN ${bytes} <= ${MAX_FIELD_BYTES} THEN ${value} END`;
}

/**
 * The metadata's fields billing reads (payload-schema.ts: who called, the usage detail, the
 * rates LiteLLM used); of the caller's `spend_logs_metadata`, only its `billing_account_id`.
 */
const BILLING_METADATA = `jsonb_build_object(
  'user_api_key_team_id', ${cutId(`j.metadata -> 'user_api_key_team_id'`)},
  'user_api_key_user_id', ${cutId(`j.metadata -> 'user_api_key_user_id'`)},
  'user_api_key_org_id', ${cutId(`j.metadata -> 'user_api_key_org_id'`)},
  'user_api_key_end_user_id', ${cutId(`j.metadata -> 'user_api_key_end_user_id'`)},
  'user_api_key_hash', ${cutId(`j.metadata -> 'user_api_key_hash'`)},
  'spend_logs_metadata', jsonb_build_object('billing_account_id', ${cutId(`j.metadata #> '{spend_logs_metadata,billing_account_id}'`)}),
  'user_api_key_auth_metadata', CASE WHEN j.metadata ? 'user_api_key_auth_metadata' AND jsonb_typeof(j.metadata -> 'user_api_key_auth_metadata') <> 'null'
    THEN jsonb_build_object('billing_account_id', ${cutId(`j.metadata #> '{user_api_key_auth_metadata,billing_account_id}'`)}) END,
  'usage_object', ${wholeField(`j.metadata -> 'usage_object'`, "size.usage_object")},
  'model_map_information', ${wholeField(`j.metadata -> 'model_map_information'`, "size.model_map_information")})`;

const OVERSIZED = `jsonb_strip_nulls(jsonb_build_object(
  'metadata.usage_object', CASE WHEN size.usage_object > ${MAX_FIELD_BYTES} THEN size.usage_object END,
  'metadata.model_map_information', CASE WHEN size.model_map_information > ${MAX_FIELD_BYTES} THEN size.model_map_information END,
  'metadata.user_api_key_auth_metadata', CASE WHEN size.key_metadata > ${MAX_FIELD_BYTES} THEN size.key_metadata END))`;

export type PageBounds = { rows: number; bytes: number; storedBytes: number };

/**
 * One page of rows with `since <= "startTime" < until`, in ("startTime", request_id) order after
 * `after`: at most `bounds.rows` rows, and no row after the one that takes the page past
 * `bounds.bytes`. The cursor is the row's "startTime" as text, so a time with microseconds is
 * compared as it is stored, never as a JavaScript Date (milliseconds), which would read rows again.
 */
export async function readSpendLogPage(
  pool: pg.Pool,
  schema: GatewaySchema,
  window: { since: Date; until: Date },
  after: SpendLogCursor,
  bounds: PageBounds,
  withKeyMetadata: boolean,
): Promise<SpendLogRow[]> {
  // Only a request LiteLLM kept (store_prompts_in_spend_logs) says the call asked for no tier.
  const requestKept = `(jsonb_typeof(j.request) = 'object' AND j.request <> '{}'::jsonb)`;
  // The tier the call asked for, as its callback carries it; else the tier the provider reported
  // (the response LiteLLM kept, its usage object), which LiteLLM's own cost calculator also reads.
  const serviceTier = `COALESCE(j.request ->> 'service_tier', j.response ->> 'service_tier',
    j.metadata #>> '{usage_object,service_tier}', j.metadata #>> '{additional_usage_values,service_tier}')`;
  const label = (column: string, name: string) => `${cutLabel(column)} AS ${name}`;
  const { rows } = await reading(pool.query<SpendLogRow>(
    // The page's keys first (the index's order, nothing else read), then only those rows' fields.
    // Each jsonb column is read out of storage once per row (|| builds it in memory; OFFSET 0 keeps
    // it from being inlined into every expression that reads it), not once per field.
    `WITH candidates AS (
       SELECT s."startTime", s.request_id,
         coalesce(pg_column_size(s.metadata), 0) + coalesce(pg_column_size(s.response), 0)
           + coalesce(pg_column_size(${spendLogColumn(schema, "proxy_server_request")}), 0) AS stored
       FROM "LiteLLM_SpendLogs" s
       WHERE s."startTime" >= $1 AND s."startTime" < $2
         AND ($3::timestamp IS NULL OR (s."startTime", s.request_id) > ($3::timestamp, $4::text))
       ORDER BY s."startTime", s.request_id
       LIMIT $5),
     keys AS (
       SELECT "startTime", request_id FROM (
         SELECT c.*, sum(c.stored) OVER (ORDER BY c."startTime", c.request_id ROWS UNBOUNDED PRECEDING) - c.stored AS stored_before
         FROM candidates c) w
       WHERE stored_before < $7),
     fields AS (
       SELECT s.request_id, s."startTime"::text AS start_key, s."startTime", s."endTime", s.spend, s.prompt_tokens, s.completion_tokens,
         ${label("s.call_type", "call_type")}, ${label("s.api_key", "api_key")}, ${label("s.model", "model")},
         ${label("s.model_group", "model_group")}, ${label("s.custom_llm_provider", "custom_llm_provider")},
         ${label(`s."user"`, `"user"`)}, ${label("s.team_id", "team_id")},
         ${label(spendLogColumn(schema, "organization_id"), "organization_id")}, ${label("s.end_user", "end_user")},
         ${label(spendLogColumn(schema, "status"), "status")}, ${label("s.cache_hit", "cache_hit")},
         ${BILLING_METADATA} AS metadata,
         k.metadata IS NOT NULL AS key_found,
         ${wholeField("k.metadata", "size.key_metadata")} AS key_metadata,
         ${label(serviceTier, "service_tier")},
         ${label(`j.request #>> '{web_search_options,search_context_size}'`, "search_context_size")},
         (${requestKept} OR ${serviceTier} IS NOT NULL) AS tier_known,
         ${OVERSIZED} AS oversized
       FROM keys JOIN "LiteLLM_SpendLogs" s USING (request_id)
       CROSS JOIN LATERAL (SELECT s.metadata || '{}'::jsonb AS metadata, ${spendLogColumn(schema, "proxy_server_request")} || '{}'::jsonb AS request,
                                  s.response || '{}'::jsonb AS response OFFSET 0) j
       CROSS JOIN LATERAL (SELECT ${withKeyMetadata ? keyMetadataColumn(schema) : "NULL::jsonb"} AS metadata OFFSET 0) k
       CROSS JOIN LATERAL (SELECT octet_length((j.metadata -> 'usage_object')::text) AS usage_object,
                                  octet_length((j.metadata -> 'model_map_information')::text) AS model_map_information,
                                  octet_length(k.metadata::text) AS key_metadata OFFSET 0) size),
     sized AS (
       SELECT f.*, sum(octet_length(f::text)) OVER (ORDER BY f."startTime", f.request_id ROWS UNBOUNDED PRECEDING) - octet_length(f::text) AS bytes_before
       FROM fields f)
     SELECT * FROM sized WHERE bytes_before < $6 ORDER BY "startTime", request_id`,
    [toUtcTimestamp(window.since), toUtcTimestamp(window.until), after?.startKey ?? null, after?.requestId ?? null, bounds.rows, bounds.bytes, bounds.storedBytes],
  ));
  return rows;
}

/**
 * A spend-log column where the database has it, else what stands for it. Each later column
 * and what its absence means:
 * - `organization_id` (20251122125322, LiteLLM 1.80.6): NULL; the organisation is read from the
 *   metadata's `user_api_key_org_id`, which LiteLLM wrote before the column existed;
 * - `status` (20250508072103): the metadata's `status`, where LiteLLM kept it before;
 * - `proxy_server_request` (20250425182129): NULL, so the service tier the call asked for is
 *   unknown unless the response's usage says it.
 */
function spendLogColumn(schema: GatewaySchema, column: "organization_id" | "status" | "proxy_server_request"): string {
  if (schema.spendLog.has(column)) return `s.${column}`;
  return { organization_id: "NULL::text", status: "j.metadata->>'status'", proxy_server_request: "NULL::jsonb" }[column];
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

function toUtcTimestamp(time: Date): string {
  return time.toISOString().replace("T", " ").replace("Z", "");
}
