import type pg from "pg";

/** One table's bytes on disk: its heap (main fork), its indexes, its TOAST table (with its index), and all of it. */
export type TableBytes = { heap: number; indexes: number; toast: number; total: number };

/**
 * Every table of the database's public schema, by name, after a VACUUM (not FULL) and ANALYZE of
 * the whole database: what autovacuum would have done by now in a deployment, so that the figure
 * does not depend on whether it happened to run. VACUUM frees dead row versions for reuse and
 * returns only empty pages at a table's end; it compacts nothing. `total` is
 * pg_total_relation_size: the three parts and the free space and visibility maps.
 */
export async function tableBytes(pool: pg.Pool): Promise<Record<string, TableBytes>> {
  await pool.query("VACUUM (ANALYZE)");
  const { rows } = await pool.query(
    `SELECT c.relname AS name, pg_relation_size(c.oid) AS heap, pg_indexes_size(c.oid) AS indexes,
            coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast, pg_total_relation_size(c.oid) AS total
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname`,
  );
  return Object.fromEntries(rows.map((row) => [row.name, { heap: Number(row.heap), indexes: Number(row.indexes), toast: Number(row.toast), total: Number(row.total) }]));
}

/** What each table grew by from `before` to `after`, per call, for the tables that grew; and all of them together. */
export function bytesPerCall(before: Record<string, TableBytes>, after: Record<string, TableBytes>, calls: number) {
  const byTable: Record<string, TableBytes> = {};
  const all: TableBytes = { heap: 0, indexes: 0, toast: 0, total: 0 };
  for (const [name, now] of Object.entries(after)) {
    const was = before[name] ?? { heap: 0, indexes: 0, toast: 0, total: 0 };
    const grown = {
      heap: (now.heap - was.heap) / calls,
      indexes: (now.indexes - was.indexes) / calls,
      toast: (now.toast - was.toast) / calls,
      total: (now.total - was.total) / calls,
    };
    if (grown.total === 0) continue;
    byTable[name] = grown;
    for (const part of ["heap", "indexes", "toast", "total"] as const) all[part] += grown[part];
  }
  return { byTable, all };
}
