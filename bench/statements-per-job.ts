import pg from "pg";
import { pino } from "pino";
import { deliverCommittedAlerts } from "../src/books/alert-outbox.js";
import { recordGrant } from "../src/books/grants.js";
import { rollUpUsage } from "../src/books/usage-rollup.js";
import { parseSettings } from "../src/platform/config.js";
import { runMigrations } from "../src/platform/db/migrate.js";
import { loadPriceBook } from "../src/pricing/price-book.js";
import type { UsageEvent } from "../src/usage/usage-event.js";
import { chargeUsageEvents } from "../src/worker/charge-usage-events.js";

/** The statements one step sent, and the first words of each. */
export type Statements = { count: number; statements: string[] };
type JobStatements = { charge: Statements; alertDelivery: Statements };

/**
 * How many SQL statements the worker's charge of one job sends, counted, not timed: the job's two
 * steps as the usage processor runs them (chargeUsageEvents, which prices the events and records
 * them with recordUsageBatch in one transaction; then deliverCommittedAlerts) over a pool whose
 * clients count each `query` (BEGIN and COMMIT included), in a throwaway database of their own.
 * Each kind of batch is charged twice, and both are kept: the first creates its accounts' rows,
 * the second is the steady state. Funded accounts draw their grant's bucket; unfunded ones go
 * further below zero, so every charge raises a negative-balance alert. Also one usage rollup run,
 * which the worker runs on an interval, not per job.
 */
export async function countJobStatements(
  adminUrl: string,
  database: string,
  env: Record<string, string>,
  batchOf: (prefix: string, account: (n: number) => string) => UsageEvent[],
) {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
  // An idle connection ended by the server (the drop below) is not a failure.
  pool.on("error", () => {});
  let counted: Statements = { count: 0, statements: [] };
  pool.on("connect", (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const text = typeof args[0] === "string" ? args[0] : (args[0] as { text: string }).text;
      counted.count += 1;
      counted.statements.push(text.replace(/\s+/g, " ").trim().slice(0, 80));
      return query(...args);
    };
  });
  const counting = async (step: () => Promise<unknown>): Promise<Statements> => {
    counted = { count: 0, statements: [] };
    await step();
    return counted;
  };
  try {
    await runMigrations(url.toString());
    const settings = parseSettings(["pricing", "balanceAlerts", "enforcement"], env);
    const priceBook = loadPriceBook(settings.pricingFile);
    const logger = pino({ level: "silent" });
    const job = async (events: UsageEvent[]): Promise<JobStatements> => {
      let alerts: Awaited<ReturnType<typeof chargeUsageEvents>>["alerts"] = [];
      const charge = await counting(async () => {
        alerts = (await chargeUsageEvents(pool, { priceBook, lowBalanceThresholds: settings.lowBalanceThresholds, enforcement: settings.enforcement }, events)).alerts;
      });
      const alertDelivery = await counting(() => deliverCommittedAlerts(pool, logger, alerts));
      return { charge, alertDelivery };
    };
    const funded = (n: number) => `stmt-funded-${n}`;
    for (let n = 0; n < 512; n++) await recordGrant(pool, { billingAccountId: funded(n), credits: 10n ** 15n, reference: `stmt-${n}`, reason: "bench" });
    const unfunded = (n: number) => `stmt-unfunded-${n}`;
    return {
      funded: { first: await job(batchOf("stmt-funded-a", funded)), steady: await job(batchOf("stmt-funded-b", funded)) },
      unfunded: { first: await job(batchOf("stmt-unfunded-a", unfunded)), steady: await job(batchOf("stmt-unfunded-b", unfunded)) },
      usageRollupRun: await counting(() => rollUpUsage(pool)),
    };
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  }
}
