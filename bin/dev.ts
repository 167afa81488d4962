import "../src/platform/node-version.js";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import pg from "pg";
import { nodeEnvAllowsDev, redactedUrl, ROLES, settingsReadBy } from "../src/platform/config.js";
import { settingsOrExit } from "../src/platform/process.js";

/**
 * `npm run dev`: the whole service on a developer's machine that has PostgreSQL and Redis, in
 * one command. It creates the database when missing, then runs what `npm start` runs (migrate,
 * then receive and charge) with development tokens; once it serves, it prints them, the `ops`
 * command line that reaches its database and queue, and a call to try. Settings given in the
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

// What the ops commands read (PRICING_FILE for `ops price`): with this process's values they
// reach the same database and queue, and read callback items as the service does.
const OPS_SETTINGS = settingsReadBy(["database", "queue", "payer", "enforcement", "balanceAlerts", "pricing"]);

// LiteLLM's callback for one call made with a team's key: the team, which LiteLLM fills from the
// key, is the payer. Relative to the checkout, as PRICING_FILE is: npm runs scripts from there.
const TRY_IT_FILE = resolve("examples/litellm-callback.json");

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
env.CONSOLE_TOKEN ??= `dev-console-${randomBytes(16).toString("hex")}`;
// Every bad setting at once, before the database is touched: these are what `npm start` reads.
settingsOrExit(ROLES["all-in-one"], env);

try {
  await createDatabaseIfMissing(env.DATABASE_URL!);
} catch (error) {
  process.stderr.write(`spend-ingest: cannot prepare the database of DATABASE_URL: ${(error as Error).message}\n`);
  // As at any start: 2 when DATABASE_URL must change (authentication refused), 1 when a restart may do.
  process.exit(String((error as { code?: unknown }).code).startsWith("28") ? 2 : 1);
}

// In this process, so that Ctrl-C and SIGTERM stop it as they stop `npm start`; the import
// returns once it serves (a start that fails has exited with its one line).
Object.assign(process.env, env);
await import("./all-in-one.js");
process.stdout.write(`${startBanner(env).join("\n")}\n`);

/** The tokens, where it listens, the ops command line beside it, and a call to try, each line ready to paste. */
function startBanner(env: Record<string, string>): string[] {
  const everyInterface = env.HOST === "0.0.0.0" || env.HOST === "::";
  // Every interface includes this machine's loopback.
  const host = everyInterface ? "127.0.0.1" : env.HOST!;
  const base = `http://${host.includes(":") ? `[${host}]` : host}:${env.PORT}`;
  const ingestToken = env.INGEST_TOKENS!.split(",")[0]!.trim();
  const ops = OPS_SETTINGS.filter((name) => env[name] !== undefined).map(
    (name) => `${name}=${shellWord(name.endsWith("_URL") ? redactedUrl(env[name]!) : env[name]!)}`,
  );
  const [call] = JSON.parse(readFileSync(TRY_IT_FILE, "utf8")) as [{ id: string; metadata: { user_api_key_team_id: string } }];
  const payer = call.metadata.user_api_key_team_id;
  const curl = (token: string, ...rest: string[]) => ["curl -sS -w '\\n'", "-H", shellWord(`Authorization: Bearer ${token}`), ...rest].join(" ");
  return [
    "spend-ingest dev: development tokens (new each run; set INGEST_TOKENS / ADMIN_TOKEN / CONSOLE_TOKEN to keep your own)",
    `  INGEST_TOKENS=${env.INGEST_TOKENS}`,
    `  ADMIN_TOKEN=${env.ADMIN_TOKEN}`,
    `  CONSOLE_TOKEN=${env.CONSOLE_TOKEN}  (sign in at ${base}/console)`,
    everyInterface
      ? `  listening on every interface (HOST=${env.HOST}), port ${env.PORT}: other machines reach it and its printed tokens`
      : `  listening on ${env.HOST} port ${env.PORT} only (HOST=0.0.0.0 opens it to other machines)`,
    `  database ${redactedUrl(env.DATABASE_URL!)}, redis ${env.REDIS_CLUSTER_NODES ?? redactedUrl(env.REDIS_URL!)}`,
    `spend-ingest dev: ops beside it, on its database and queue (any command after --${ops.some((setting) => setting.includes("***")) ? "; put your password where *** stands" : ""}):`,
    `  ${ops.join(" ")} npm run -s ops -- quarantine list`,
    `spend-ingest dev: try it: one call billed to ${payer}, which has no credits, so its balance goes below zero (inv_post_call_negative_balance in this log)`,
    `  ${curl(ingestToken, "-H 'Content-Type: application/json'", `--data-binary ${shellWord(`@${TRY_IT_FILE}`)}`, `${base}/v1/callbacks/litellm`)}`,
    "spend-ingest dev: its receipt, and the account's balance:",
    `  ${curl(env.ADMIN_TOKEN!, `${base}/v1/receipts/${encodeURIComponent(call.id)}`)}`,
    `  ${curl(env.ADMIN_TOKEN!, `${base}/v1/accounts/${encodeURIComponent(payer)}/credits/summary`)}`,
  ];
}

/** `text` as one word of a POSIX shell command line. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

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
