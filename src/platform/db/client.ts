import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import pg from "pg";
import * as schema from "./schema.js";

export type Db = NodePgDatabase<typeof schema>;

export type Database = {
  pool: pg.Pool;
  db: Db;
};

/** A job's transaction of five statements takes milliseconds; these are for a database in trouble. */
export const DATABASE_TIMEOUTS = { connectMs: 5_000, statementMs: 15_000, lockMs: 10_000, idleInTransactionMs: 30_000 };

/**
 * Whether an error says PostgreSQL is unreachable or not answering (rather than refusing a
 * statement): callers answer 503 and retry, never 500.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const { code, message, cause } = (error ?? {}) as { code?: unknown; message?: unknown; cause?: unknown };
  // drizzle wraps the driver's error as the cause of its own.
  if (cause !== undefined && cause !== error && isDatabaseUnavailable(cause)) return true;
  if (typeof code === "string") {
    // Connection exceptions, operator intervention (shutdown, statement and lock timeouts), a
    // transaction too slow to post (serialization_failure from ledger_entries_commit_promptly), and
    // the socket errors of a connection that broke.
    return code.startsWith("08") || code.startsWith("57") || code === "55P03" || code === "40001" || /^E[A-Z]+$/.test(code);
  }
  return /timeout|Connection terminated|connection.*(closed|ended)|not queryable/i.test(String(message));
}

/**
 * drizzle over a pool or over one client: on a transaction's client, its statements run in
 * that transaction. Cheap to make (no connection of its own), so made where it is used.
 */
export function drizzleOver(connection: pg.Pool | pg.PoolClient): Db {
  return drizzle(connection, { schema });
}

export function createDatabase(
  databaseUrl: string,
  options: { max?: number; onIdleClientError?: (error: Error) => void } = {},
): Database {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max ?? 10,
    application_name: "spend-ingest",
    // Every wait is bounded: a PostgreSQL that accepts connections and never answers, or a lock
    // held forever, fails the request or job (which retries) instead of hanging it.
    connectionTimeoutMillis: DATABASE_TIMEOUTS.connectMs,
    statement_timeout: DATABASE_TIMEOUTS.statementMs,
    lock_timeout: DATABASE_TIMEOUTS.lockMs,
    idle_in_transaction_session_timeout: DATABASE_TIMEOUTS.idleInTransactionMs,
    // The server's timeouts do nothing for a server that has stopped answering: the client gives up too.
    query_timeout: DATABASE_TIMEOUTS.statementMs + 5_000,
    keepAlive: true,
  });
  // An idle client losing its server must not crash the process; the pool replaces it.
  pool.on("error", options.onIdleClientError ?? (() => {}));
  return { pool, db: drizzleOver(pool) };
}

/**
 * A pooled client held for several statements. A connection lost while no statement runs (a
 * crash between a transaction's statements) is an 'error' event on the checked-out client,
 * which unheard would stop the process: it is heard here, the next statement fails with it,
 * and `release` destroys the client.
 */
async function checkOut(pool: pg.Pool): Promise<{ client: pg.PoolClient; release: (failure?: Error) => void }> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (error: Error) => {
    lost = error;
  };
  client.on("error", onError);
  return {
    client,
    release: (failure?: Error) => {
      client.off("error", onError);
      client.release(failure ?? lost);
    },
  };
}

/** Runs `work` in one transaction on one client, rolling back on any throw. */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const { client, release } = await checkOut(pool);
  let result: T;
  try {
    await client.query("BEGIN");
    result = await work(client);
    await client.query("COMMIT");
  } catch (error) {
    // A client whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
    const rollbackError = await client.query("ROLLBACK").then(
      () => undefined,
      (failure: Error) => failure,
    );
    release(rollbackError);
    throw error;
  }
  release();
  return result;
}

/**
 * Runs `work` holding a session-level advisory lock on a client of its own, or answers
 * `{ locked: false }` at once when another session holds it. PostgreSQL releases the lock of a
 * process that dies with its session, so a crash never leaves it held.
 */
export async function withSessionLock<T>(
  pool: pg.Pool,
  key: number,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<{ locked: false } | { locked: true; result: T }> {
  const { client, release } = await checkOut(pool);
  let unlockFailed: Error | undefined;
  try {
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [key]);
    if (!rows[0]!.locked) return { locked: false };
    try {
      return { locked: true, result: await work(client) };
    } finally {
      // A session that could not unlock is destroyed, so it cannot go back to the pool holding the lock.
      await client.query("SELECT pg_advisory_unlock($1)", [key]).catch((error: Error) => {
        unlockFailed = error;
      });
    }
  } finally {
    release(unlockFailed);
  }
}

/**
 * What PostgreSQL text and jsonb can hold of a string from outside: neither the NUL character
 * nor a lone UTF-16 surrogate, so those are kept visibly instead of failing a whole batch on
 * one hostile string.
 */
export function storableCopy(text: string): string {
  return text.replaceAll("\u0000", "\\u0000").toWellFormed();
}

// What JSON.stringify writes for a string storableCopy would change: a NUL or a lone surrogate
// (either escaped as \u0000 or \udXXX). Also matches an escaped backslash before such text,
// which only sends that value the slow way.
const UNSTORABLE_ESCAPE = /\\u(?:0000|d[89a-f])/i;

/** JSON for a jsonb parameter, every string in it made storable. */
export function jsonbText(value: unknown): string {
  // Most values hold nothing to mend: one native stringify, without a callback per value.
  const text = JSON.stringify(value ?? null);
  if (!UNSTORABLE_ESCAPE.test(text)) return text;
  return JSON.stringify(value ?? null, (_key, inner: unknown) => (typeof inner === "string" ? storableCopy(inner) : inner));
}

/**
 * `value` as jsonb hands it back: an object's keys shortest first, then by their UTF-8 bytes, so a
 * value kept in jsonb and the same value in hand serialise to the same bytes.
 */
export function inJsonbKeyOrder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(inJsonbKeyOrder);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(jsonbKeyOrder(Object.keys(value)).map((key) => [key, inJsonbKeyOrder((value as Record<string, unknown>)[key])]));
}

// Alerts of one kind share their keys: each key list is sorted once, not once per object.
const keyOrders = new Map<string, string[]>();
const MAX_KEY_ORDERS = 256;

function jsonbKeyOrder(keys: string[]): string[] {
  const listed = JSON.stringify(keys);
  const known = keyOrders.get(listed);
  if (known !== undefined) return known;
  const sorted = keys.map((key) => ({ key, bytes: Buffer.from(key) }));
  sorted.sort((a, b) => a.bytes.length - b.bytes.length || Buffer.compare(a.bytes, b.bytes));
  const order = sorted.map(({ key }) => key);
  // Bounded: objects with keys of a caller's choosing (a quarantined item) must not grow it without end.
  if (keyOrders.size >= MAX_KEY_ORDERS) keyOrders.clear();
  keyOrders.set(listed, order);
  return order;
}
