import { Socket } from "node:net";
import pg from "pg";
import { canonicalId } from "../usage/storable-text.js";

/**
 * Read-only access to LiteLLM's own database, where its proxy keeps a row for every call it
 * served in "LiteLLM_SpendLogs" (Prisma's quoted camel-case names). Every query has a timeout:
 * a stuck gateway database must never stall billing. The page reader is spend-log-page.ts.
 */

const STATEMENT_TIMEOUT_MS = 30_000;

/** A failure reading LiteLLM's database, told apart from one of our own. */
export class SpendLogError extends Error {
  constructor(cause: unknown) {
    super((cause as Error).message ?? String(cause), { cause });
    this.name = "SpendLogError";
  }
}

export async function reading<T>(query: Promise<T>): Promise<T> {
  try {
    return await query;
  } catch (error) {
    throw new SpendLogError(error);
  }
}

// Each pool's sockets, so that ending it can cut a wait on a database that does not answer.
const poolSockets = new WeakMap<pg.Pool, Set<Socket>>();

export function createSpendLogPool(url: string): pg.Pool {
  const sockets = new Set<Socket>();
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
    // ISO dates: the page cursor is "startTime" as PostgreSQL prints it, read back as a timestamp.
    options: "-c default_transaction_read_only=on -c DateStyle=ISO",
    // pg's own stream, made here so endSpendLogPool can destroy it (TLS, if any, runs over it).
    stream: () => {
      const socket = new Socket();
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
      return socket;
    },
    types: { getTypeParser: (oid: number, format?: "text" | "binary") => (oid === TIMESTAMP_OID ? parseUtcTimestamp : pg.types.getTypeParser(oid, format as "text")) },
  });
  pool.on("error", () => {});
  poolSockets.set(pool, sockets);
  return pool;
}

/**
 * Ends the pool now, for a shutdown: a query waiting on LiteLLM's database (a lock, a server or
 * network that stopped answering) fails at once with a SpendLogError instead of holding the
 * process until its timeout, and so does every later query of the run.
 */
export async function endSpendLogPool(pool: pg.Pool): Promise<void> {
  const ended = pool.ended ? Promise.resolve() : pool.end();
  for (const socket of poolSockets.get(pool) ?? []) socket.destroy();
  await ended;
}

/**
 * What LiteLLM's database holds, read once per run from information_schema: its tables grew
 * column by column over the versions we support, and a read-only role may see only some of them.
 * The reader asks for what is there and reads a missing column as NULL (see spend-log-page.ts).
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
 * Which of `keys` (receipts' keys, stored canonical: NFC) LiteLLM has a row for, its request id
 * in that form or in NFD (how a gateway or provider may write the same id). Looked up by LiteLLM's
 * primary key, so each page costs an index probe per key, never a scan.
 */
export async function spendLogRowsExist(pool: pg.Pool, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const forms = [...new Set(keys.flatMap((key) => [key, key.normalize("NFD")]))];
  const { rows } = await reading(pool.query<{ request_id: string }>(
    `SELECT request_id FROM "LiteLLM_SpendLogs" WHERE request_id = ANY($1::text[])`,
    [forms],
  ));
  return new Set(rows.map((row) => canonicalRequestId(row.request_id)));
}

/**
 * A spend-log request id in the form receipts keep it (canonicalId: NFC), so an id LiteLLM
 * wrote in another normal form is found billed; an id that can be no key is left as it is
 * (the reader refuses it, and no receipt has it).
 */
export function canonicalRequestId(requestId: string): string {
  const canonical = canonicalId(requestId);
  return canonical.ok ? canonical.value : requestId;
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
