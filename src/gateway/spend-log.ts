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
  /** The key's own metadata (LiteLLM_VerificationToken), where LiteLLM keeps it; the spend log does not. */
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

/** One page of rows with `since <= "startTime" < until`, in ("startTime", request_id) order after `after`. */
export async function readSpendLogPage(
  pool: pg.Pool,
  window: { since: Date; until: Date },
  after: SpendLogCursor,
  limit: number,
  withKeyMetadata: boolean,
): Promise<SpendLogRow[]> {
  const keyMetadata = withKeyMetadata
    ? `(SELECT t.metadata FROM "LiteLLM_VerificationToken" t WHERE t.token = s.api_key)`
    : "NULL::jsonb";
  const { rows } = await reading(pool.query<SpendLogRow>(
    `SELECT s.request_id, s.call_type, s.api_key, s.spend, s.prompt_tokens, s.completion_tokens,
            s."startTime", s."endTime", s.model, s.model_group, s.custom_llm_provider, s."user", s.team_id,
            s.organization_id, s.end_user, s.status, s.cache_hit, s.metadata, ${keyMetadata} AS key_metadata,
            s.proxy_server_request->>'service_tier' AS service_tier,
            s.proxy_server_request->'web_search_options'->>'search_context_size' AS search_context_size
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

/** Whether LiteLLM's database keeps key metadata (LiteLLM_VerificationToken) where we can read it. */
export async function hasKeyMetadata(pool: pg.Pool): Promise<boolean> {
  const { rows } = await reading(
    pool.query<{ present: boolean }>(
      `SELECT to_regclass('"LiteLLM_VerificationToken"') IS NOT NULL
         AND has_table_privilege('"LiteLLM_VerificationToken"', 'SELECT') AS present`,
    ),
  );
  return rows[0]?.present === true;
}

// Prisma's timestamp(3) columns hold UTC without a zone: read and compare them as such.
const TIMESTAMP_OID = 1114;

function parseUtcTimestamp(text: string): Date {
  return new Date(`${text.replace(" ", "T")}Z`);
}

function toUtcTimestamp(time: Date): string {
  return time.toISOString().replace("T", " ").replace("Z", "");
}
