import "../src/platform/node-version.js";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { nodeEnvAllowsDev, redactedUrl, ROLES } from "../src/platform/config.js";
import { settingsOrExit } from "../src/platform/process.js";

/**
 * `npm run dev`: the whole service on a developer's machine that has PostgreSQL and Redis, in
 * one command. It creates the database when missing, then runs what `npm start` runs (migrate,
 * then receive and charge) with development tokens it prints. Settings given in the
 * environment win over its defaults.
 */
const DEFAULTS = {
  DATABASE_URL: "postgres://postgres@127.0.0.1:5432/spend_ingest_dev",
  REDIS_URL: "redis://127.0.0.1:6379/0",
  PORT: "8080",
  // Its tokens are printed on the terminal: only this machine reaches it unless HOST says otherwise.
  HOST: "127.0.0.1",
  QUEUE_PREFIX: "spend-ingest-dev",
  LOG_LEVEL: "info",
};

if (!nodeEnvAllowsDev(process.env.NODE_ENV)) {
  // The value is not echoed: it is one line whatever NODE_ENV holds.
  process.stderr.write("spend-ingest: npm run dev makes up its own tokens and runs only with NODE_ENV unset, development or test; use npm start\n");
  process.exit(2);
}

const env: Record<string, string> = {
  ...DEFAULTS,
  // Empty counts as unset, as in every setting: an empty HOST must not open dev to every interface.
  ...(Object.fromEntries(Object.entries(process.env).filter(([, value]) => value !== undefined && value !== "")) as Record<string, string>),
};
// Fresh each run: a development token must not become a credential someone else knows.
env.INGEST_TOKENS ??= `dev-ingest-${randomBytes(16).toString("hex")}`;
env.ADMIN_TOKEN ??= `dev-admin-${randomBytes(16).toString("hex")}`;
// Every bad setting at once, before the database is touched: these are what `npm start` reads.
settingsOrExit(ROLES["all-in-one"], env);

try {
  await createDatabaseIfMissing(env.DATABASE_URL!);
} catch (error) {
  process.stderr.write(`spend-ingest: cannot prepare the database of DATABASE_URL: ${(error as Error).message}\n`);
  // As at any start: 2 when DATABASE_URL must change (authentication refused), 1 when a restart may do.
  process.exit(String((error as { code?: unknown }).code).startsWith("28") ? 2 : 1);
}

// Every interface includes this machine's loopback.
const host = env.HOST === "0.0.0.0" || env.HOST === "::" ? "127.0.0.1" : env.HOST!;
const base = `http://${host.includes(":") ? `[${host}]` : host}:${env.PORT}`;
process.stdout.write(
  [
    "spend-ingest dev: development tokens (new each run; set INGEST_TOKENS / ADMIN_TOKEN to keep your own)",
    `  INGEST_TOKENS=${env.INGEST_TOKENS}`,
    `  ADMIN_TOKEN=${env.ADMIN_TOKEN}`,
    `  callbacks: POST ${base}/v1/callbacks/litellm  (Authorization: Bearer <INGEST_TOKENS>)`,
    `  accounts:  GET ${base}/v1/accounts/<id>/credits/summary  (Authorization: Bearer <ADMIN_TOKEN>)`,
    `  database ${redactedUrl(env.DATABASE_URL!)}, redis ${redactedUrl(env.REDIS_URL!)}`,
    "",
  ].join("\n"),
);

// In this process, so that Ctrl-C and SIGTERM stop it as they stop `npm start`.
Object.assign(process.env, env);
await import("./all-in-one.js");

/** CREATE DATABASE on the same server (through its `postgres` database) unless it exists. */
async function createDatabaseIfMissing(databaseUrl: string): Promise<void> {
  const target = new URL(databaseUrl);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (name === "") throw new Error("the URL names no database");
  const admin = new URL(databaseUrl);
  admin.pathname = "/postgres";
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      process.stdout.write(`spend-ingest dev: created database ${name}\n`);
    }
  } finally {
    await client.end();
  }
}
