import { parseArgs } from "node:util";
import { parseOpsEnv } from "../src/config/env.js";
import { createDatabase } from "../src/db/client.js";
import { createRedis } from "../src/deps.js";
import { recordGrant } from "../src/ledger/grants.js";
import { reconcileLedger } from "../src/ledger/reconcile.js";
import { createUsageQueue } from "../src/queue/producer.js";
import { settingsOrExit } from "./runtime.js";

const USAGE = `usage: npm run ops -- <command> [--json]

commands:
  queues                                 job counts by state
  reconcile                              check every balance against its ledger (exit 1 on drift)
  grant <account> <credits> <reference>  add credits once per reference`;

const EXIT_OK = 0;
const EXIT_PROBLEM = 1;
const EXIT_USAGE = 2;

const { values: flags, positionals } = (() => {
  try {
    return parseArgs({ allowPositionals: true, options: { json: { type: "boolean" }, help: { type: "boolean" } } });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(EXIT_USAGE);
  }
})();
const [command, ...args] = positionals;
if (flags.help || command === undefined) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(command === undefined && !flags.help ? EXIT_USAGE : EXIT_OK);
}

const settings = settingsOrExit(parseOpsEnv);
const print = (json: unknown, human: string) =>
  process.stdout.write(flags.json ? `${JSON.stringify(json, null, 2)}\n` : `${human}\n`);

async function run(): Promise<number> {
  switch (command) {
    case "reconcile": {
      const database = createDatabase(settings.databaseUrl, { max: 2 });
      try {
        const report = await reconcileLedger(database.pool);
        const human = report.ok
          ? `ok (${report.accountsChecked} accounts)`
          : [`drift found in ${report.accountsChecked} accounts:`, ...report.drifts.map((d) => `  ${JSON.stringify(d)}`)].join("\n");
        print(report, human);
        return report.ok ? EXIT_OK : EXIT_PROBLEM;
      } finally {
        await database.pool.end();
      }
    }
    case "grant": {
      const [account, credits, reference] = args;
      if (!account || !credits || !/^[1-9]\d*$/.test(credits) || !reference) {
        process.stderr.write(`grant needs <account> <credits (a positive integer)> <reference>\n${USAGE}\n`);
        return EXIT_USAGE;
      }
      const database = createDatabase(settings.databaseUrl, { max: 2 });
      try {
        const result = await recordGrant(database.pool, {
          billingAccountId: account,
          credits: BigInt(credits),
          reference,
          reason: "ops grant",
        });
        const json = {
          outcome: result.outcome,
          billing_account_id: result.grant.billingAccountId,
          credits: Number(result.grant.credits),
          reference: result.grant.reference,
          balance_credits: "balanceCredits" in result ? Number(result.balanceCredits) : null,
        };
        if (result.outcome === "conflict") {
          print(json, `conflict: reference ${reference} was used for ${result.grant.credits} credits to ${result.grant.billingAccountId}`);
          return EXIT_PROBLEM;
        }
        print(json, `${result.outcome}: ${account} balance ${json.balance_credits}`);
        return EXIT_OK;
      } finally {
        await database.pool.end();
      }
    }
    case "queues": {
      const redis = createRedis(settings.redisUrl, { forWorker: false });
      const queue = createUsageQueue(redis, settings.queuePrefix);
      try {
        const counts = await queue.getJobCounts("waiting", "active", "delayed", "completed", "failed", "prioritized");
        print({ [queue.name]: counts }, Object.entries(counts).map(([state, n]) => `${queue.name}\t${state}\t${n}`).join("\n"));
        return EXIT_OK;
      } finally {
        await queue.close();
        await redis.quit();
      }
    }
    default:
      process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
      return EXIT_USAGE;
  }
}

process.exit(await run());
