import type pg from "pg";
import { rollUpUsage } from "../../src/books/usage-rollup.js";
import { waitFor } from "./wait.js";

/**
 * Runs the rollup until it has taken in every receipt committed so far. The watermark is the
 * oldest transaction running anywhere on the server, other tests' too: it may take a few runs.
 */
export async function rollUpAll(pool: pg.Pool): Promise<void> {
  await waitFor(async () => {
    await rollUpUsage(pool);
    const { rows } = await pool.query("SELECT count(*)::int AS n FROM charge_receipts r, usage_rollup_watermark w WHERE r.xact >= w.xact");
    return rows[0].n === 0;
  }, 60_000);
}
