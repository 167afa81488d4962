import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import { parseGatewayEnv, parseOpsEnv, parsePricingEnv } from "../platform/config.js";
import { countsJson, type GatewayReport, reconcileGateway } from "../gateway/reconcile.js";
import { createSpendLogPool, SpendLogError } from "../gateway/spend-log.js";
import { createDatabase, type Database } from "../platform/db/client.js";
import { createRedis } from "../platform/deps.js";
import { parseCallbackBody } from "../litellm/callback-body.js";
import { normaliseCallbackItem } from "../litellm/payload.js";
import { type ReplayReport, replayQuarantined } from "./replay-quarantine.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { recordGrant } from "../books/grants.js";
import { assignBillingAccount, listQuarantined } from "../books/quarantine.js";
import { type BookHead, headsDigest, readBookHeads, verifyBookHeads } from "../books/book-heads.js";
import { reconcileLedger } from "../books/reconcile.js";
import { toDecimalString } from "../pricing/decimal.js";
import { gatewayRates, loadPriceBook, type PriceBook, PriceBookError } from "../pricing/price-book.js";
import {
  candidateNames,
  type Divergence,
  type PricedLine,
  type PricingOutcome,
  priceUsageEvent,
} from "../pricing/price-usage-event.js";
import type { UsageEvent } from "../usage/usage-event.js";
import { createUsageQueue, enqueueCallbackItems } from "../platform/queue-producer.js";
import { canonicalId } from "../usage/storable-text.js";
import { exactJsonInteger, progress, table, terminalSafe, terminalSafeJson, terminalSafeLines, truncate } from "./output.js";
import { settingsOrExit } from "../platform/process.js";

const HELP: Record<string, string> = {
  queues: "queues                                  job counts by state",
  failed: "failed [--limit N]                      failed jobs with their reasons (newest first)",
  "retry-failed": "retry-failed                            send every failed job back to be processed",
  reconcile:
    "reconcile [--against <heads.json>]      check every balance, chain, receipt and grant against the ledger, and\n                                          that nothing before the heads in the file changed (exit 1 on drift)",
  books: "books head                              every account's head (sequence, hash) and their digest: keep it elsewhere",
  grant: "grant <account> <credits> <reference>   add credits once per reference",
  quarantine:
    "quarantine list [--reason R] [--all]    refused items not yet replayed (--all: replayed too)\n  quarantine assign <id> <account>        bill a no_billing_account item to an account (then replay)\n  quarantine replay [--reason R] [--wait S]\n                                          send refused items back through the pipeline, wait up to S seconds (60) for them and count what became of each (receipt_conflict items stay)",
  price: "price <payload.json>                    explain what the price book charges for LiteLLM payloads",
  gateway:
    "gateway reconcile --since T [--until T] [--apply]\n                                          calls in LiteLLM's spend log never billed (--apply: bill them once)",
};

const USAGE = `usage: npm run ops -- <command> [options] [--json]

commands:
${Object.values(HELP)
  .map((line) => `  ${line}`)
  .join("\n")}

every command takes --json; exit codes: 0 ok, 1 found a problem, 2 bad usage`;

const EXIT_OK = 0;
const EXIT_PROBLEM = 1;
const EXIT_USAGE = 2;

const MAX_POSTGRES_BIGINT = 2n ** 63n - 1n;
// Long enough for a worker to charge a few thousand events; an hour at most.
const DEFAULT_REPLAY_WAIT_SECONDS = 60;
const MAX_REPLAY_WAIT_SECONDS = 3600;

type Flags = {
  json?: boolean;
  help?: boolean;
  reason?: string;
  all?: boolean;
  limit?: string;
  since?: string;
  until?: string;
  apply?: boolean;
  against?: string;
  wait?: string;
};

function parseCommandLine(): { flags: Flags; words: string[] } {
  try {
    const { values, positionals } = parseArgs({
      allowPositionals: true,
      options: {
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        reason: { type: "string" },
        all: { type: "boolean" },
        limit: { type: "string" },
        since: { type: "string" },
        until: { type: "string" },
        apply: { type: "boolean" },
        against: { type: "string" },
        wait: { type: "string" },
      },
    });
    return { flags: values, words: positionals };
  } catch (error) {
    return usageError((error as Error).message);
  }
}

function usageError(message: string): never {
  process.stderr.write(`${terminalSafe(message)}\n${USAGE}\n`);
  process.exit(EXIT_USAGE);
}

/** A positive whole number in plain digits, up to `max`; undefined for anything else. */
function positiveInteger(text: string, max: bigint): bigint | undefined {
  if (!/^[1-9]\d*$/.test(text)) return undefined;
  const value = BigInt(text);
  return value <= max ? value : undefined;
}

/** An account id or reference from the command line in its canonical form, or a usage error naming it. */
function idArgument(command: string, argument: string, text: string): string {
  // The command line cannot carry a lone surrogate or other bytes that are not UTF-8: Node
  // hands them over as U+FFFD, and an id quietly made of those would be another id.
  if (text.includes("\uFFFD")) {
    return usageError(`${command}: ${argument} holds U+FFFD (the command line carried bytes that are not UTF-8)`);
  }
  const canonical = canonicalId(text);
  return canonical.ok ? canonical.value : usageError(`${command}: ${argument} ${canonical.message}`);
}

const headsFileSchema = z.object({
  taken_at: z.string(),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  heads: z.array(z.object({ billing_account_id: z.string(), seq: z.number().int().positive(), hash: z.string().regex(/^[0-9a-f]{64}$/) })),
});
type HeadsFile = z.infer<typeof headsFileSchema>;

/** What `books head --json` wrote, checked whole (its digest too), or a usage error saying why not. */
function readHeadsFile(path: string): { takenAt: string; heads: BookHead[] } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    return usageError(`reconcile --against: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return usageError(`reconcile --against: ${path} is not JSON (expected the output of books head --json)`);
  }
  const parsed = headsFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return usageError(`reconcile --against: ${path}: ${issue.path.join(".") || "the file"}: ${issue.message} (expected the output of books head --json)`);
  }
  const heads = parsed.data.heads.map((head) => ({ billingAccountId: head.billing_account_id, seq: head.seq, hash: head.hash }));
  if (headsDigest(heads) !== parsed.data.digest) {
    return usageError(`reconcile --against: ${path}: the digest does not match the heads in the file (the file was changed)`);
  }
  return { takenAt: parsed.data.taken_at, heads };
}

const { flags, words } = parseCommandLine();
// Every value is escaped where it is interpolated; this is the net for one that was missed.
const print = (json: unknown, human: string) =>
  process.stdout.write(`${flags.json ? terminalSafeJson(json) : terminalSafeLines(human)}\n`);

async function withDatabase<T>(work: (database: Database) => Promise<T>): Promise<T> {
  const database = createDatabase(settingsOrExit(parseOpsEnv).databaseUrl, { max: 2 });
  try {
    return await work(database);
  } finally {
    await database.pool.end();
  }
}

async function withQueue<T>(work: (queue: ReturnType<typeof createUsageQueue>) => Promise<T>): Promise<T> {
  const settings = settingsOrExit(parseOpsEnv);
  const redis = createRedis(settings.redis, { forWorker: false });
  const queue = createUsageQueue(redis, settings.queuePrefix);
  // A lost connection fails the command that needed it; the events alone would print stacks.
  redis.on("error", () => {});
  queue.on("error", () => {});
  try {
    return await work(queue);
  } finally {
    // A connection never used (or lost) must not hide the error that ended the command.
    await queue.close().catch(() => {});
    await redis.quit().catch(() => redis.disconnect());
  }
}

/** The price book of PRICING_FILE, or the one line that says why it does not load (exit 1). */
function priceBookOrExit(): PriceBook {
  const { pricingFile } = settingsOrExit(parsePricingEnv);
  try {
    return loadPriceBook(pricingFile);
  } catch (error) {
    if (!(error instanceof PriceBookError)) throw error;
    process.stderr.write(`spend-ingest: invalid setting PRICING_FILE: ${terminalSafe(error.message)}\n`);
    process.exit(EXIT_PROBLEM);
  }
}

/** A time on the command line: an ISO-8601 date or date and time (UTC unless it says otherwise). */
function timeArgument(flag: string, text: string | undefined): Date {
  // A time without a zone is UTC, as the help says, whatever the machine's zone.
  const utc = text === undefined ? "" : /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : /(Z|[+-]\d{2}:?\d{2})$/.test(text) ? text : `${text}Z`;
  const time = text === undefined ? Number.NaN : Date.parse(utc);
  if (Number.isNaN(time)) return usageError(`gateway reconcile: --${flag} takes a date or time such as 2026-11-01 or 2026-11-01T12:00:00Z`);
  return new Date(time);
}

const commands: Record<string, (args: string[]) => Promise<number>> = {
  async gateway([action]) {
    if (action !== "reconcile") return usageError("gateway needs reconcile");
    const since = timeArgument("since", flags.since);
    const until = flags.until === undefined ? new Date() : timeArgument("until", flags.until);
    if (until <= since) return usageError("gateway reconcile: --until must be after --since");
    const { litellmDatabaseUrl } = settingsOrExit(parseGatewayEnv);
    const { billingAccountFrom } = settingsOrExit(parseOpsEnv);
    const book = priceBookOrExit();
    const spendLog = createSpendLogPool(litellmDatabaseUrl);
    try {
      return await withDatabase(({ pool }) =>
        withQueue(async (queue) => {
          const shown = flags.json ? undefined : progress("gateway reconcile");
          const report = await reconcileGateway({
            spendLog,
            pool,
            priceBook: book,
            billingAccountFrom,
            since,
            until,
            apply: flags.apply ? (missing) => enqueueCallbackItems(queue, missing) : undefined,
            onProgress: (total) => shown?.update(`${total.litellmCalls} calls read, ${total.missing} missing`),
          });
          shown?.done();
          printGatewayReport(report);
          return report.total.missing === 0 ? EXIT_OK : EXIT_PROBLEM;
        }),
      );
    } catch (error) {
      // LiteLLM's database unreachable or unreadable: one line, not a stack.
      if (!(error instanceof SpendLogError)) throw error;
      process.stderr.write(`spend-ingest: LiteLLM's database (LITELLM_DATABASE_URL) cannot be read: ${terminalSafe((error as Error).message)}\n`);
      return EXIT_PROBLEM;
    } finally {
      await spendLog.end();
    }
  },

  async queues() {
    return withQueue(async (queue) => {
      const counts = await queue.getJobCounts("waiting", "active", "delayed", "prioritized", "completed", "failed");
      print(
        { [queue.name]: counts },
        table(
          ["queue", "state", "jobs"],
          Object.entries(counts).map(([state, count]) => [queue.name, state, count]),
        ),
      );
      return EXIT_OK;
    });
  },

  async failed() {
    const limit = Number(flags.limit ?? 50);
    if (!Number.isInteger(limit) || limit < 1) return usageError("--limit takes a positive whole number");
    return withQueue(async (queue) => {
      const jobs = await queue.getJobs(["failed"], 0, limit - 1, false);
      const rows = jobs.map((job) => ({
        id: job.id ?? "",
        name: job.name,
        attempts: job.attemptsMade,
        failed_at: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
        reason: job.failedReason,
      }));
      print(
        rows,
        rows.length === 0
          ? "no failed jobs"
          : table(
              ["id", "name", "attempts", "failed at", "reason"],
              rows.map((row) => [truncate(row.id, 24), row.name, row.attempts, row.failed_at ?? "-", truncate(row.reason, 80)]),
            ),
      );
      return rows.length === 0 ? EXIT_OK : EXIT_PROBLEM;
    });
  },

  async "retry-failed"() {
    return withQueue(async (queue) => {
      const failed = await queue.getFailedCount();
      // Charging is idempotent per call, so a retried job charges nothing twice.
      await queue.retryJobs({ state: "failed", count: 1000 });
      print({ retried: failed }, `retried ${failed} failed job(s)`);
      return EXIT_OK;
    });
  },

  async reconcile() {
    const stored = flags.against === undefined ? undefined : readHeadsFile(flags.against);
    return withDatabase(async ({ pool }) => {
      const shown = flags.json ? undefined : progress("reconcile");
      const report = await reconcileLedger(pool, { onProgress: (checked) => shown?.update(`${checked} accounts checked`) });
      shown?.done();
      const headDrifts = stored === undefined ? [] : await verifyBookHeads(pool, stored.heads);
      const ok = report.ok && headDrifts.length === 0;
      const drifts = [...report.drifts, ...headDrifts];
      const against = stored === undefined ? "" : `, ${stored.heads.length} heads of ${terminalSafe(stored.takenAt)} unchanged`;
      const human = ok
        ? `ok (${report.accountsChecked} accounts${against})`
        : [`drift found in ${report.accountsChecked} accounts:`, ...drifts.map((drift) => `  ${terminalSafe(JSON.stringify(drift))}`)].join("\n");
      print({ ...report, ok, drifts, headsChecked: stored?.heads.length ?? null }, human);
      return ok ? EXIT_OK : EXIT_PROBLEM;
    });
  },

  async books([action]) {
    if (action !== "head") return usageError("books needs head");
    return withDatabase(async ({ pool }) => {
      const { heads, headless } = await readBookHeads(pool);
      const { rows } = await pool.query<{ now: Date }>("SELECT now()");
      const file: HeadsFile = {
        taken_at: rows[0]!.now.toISOString(),
        digest: headsDigest(heads),
        heads: heads.map((head) => ({ billing_account_id: head.billingAccountId, seq: head.seq, hash: head.hash })),
      };
      const human = [
        table(["account", "seq", "hash"], heads.map((head) => [head.billingAccountId, head.seq, head.hash])),
        `${heads.length} account(s) at ${file.taken_at}; digest ${file.digest}`,
        ...headless.map((account) => `no head for ${terminalSafe(account)}: its last entry is gone (run reconcile)`),
      ].join("\n");
      print(headless.length === 0 ? file : { ...file, headless }, human);
      return headless.length === 0 ? EXIT_OK : EXIT_PROBLEM;
    });
  },

  async grant([accountText, creditsText, referenceText]) {
    if (!accountText || !creditsText || !referenceText) {
      return usageError("grant needs <account> <credits (a positive integer)> <reference>");
    }
    const credits = positiveInteger(creditsText, MAX_CREDITS);
    if (credits === undefined) return usageError(`grant: credits must be a whole number from 1 to ${MAX_CREDITS}`);
    const account = idArgument("grant", "account", accountText);
    const reference = idArgument("grant", "reference", referenceText);
    return withDatabase(async ({ pool }) => {
      const result = await recordGrant(pool, { billingAccountId: account, credits, reference, reason: "ops grant" });
      if (result.outcome === "out_of_range") {
        const json = { outcome: result.outcome, billing_account_id: account, balance_credits: exactJsonInteger(result.balanceCredits) };
        print(json, `refused: the balance of ${terminalSafe(account)} (${result.balanceCredits}) would pass ${MAX_CREDITS} credits; nothing was granted`);
        return EXIT_PROBLEM;
      }
      const json = {
        outcome: result.outcome,
        billing_account_id: result.grant.billingAccountId,
        credits: exactJsonInteger(result.grant.credits),
        reference: result.grant.reference,
        balance_credits: result.outcome === "conflict" ? null : exactJsonInteger(result.balanceCredits),
      };
      if (result.outcome === "conflict") {
        const { credits: grantedCredits, billingAccountId } = result.grant;
        print(json, `conflict: reference ${terminalSafe(reference)} was used for ${grantedCredits} credits to ${terminalSafe(billingAccountId)}`);
        return EXIT_PROBLEM;
      }
      print(json, `${result.outcome}: ${terminalSafe(account)} balance ${result.balanceCredits}`);
      return EXIT_OK;
    });
  },

  async quarantine([action, ...rest]) {
    if (action === "assign") {
      const [idText, accountText] = rest;
      if (!idText || !accountText) return usageError("quarantine assign needs <quarantine id> <account id>");
      const id = positiveInteger(idText, MAX_POSTGRES_BIGINT)?.toString();
      if (id === undefined) return usageError(`quarantine assign: id must be a whole number from 1 to ${MAX_POSTGRES_BIGINT}`);
      const account = idArgument("quarantine assign", "account", accountText);
      return withDatabase(async ({ pool }) => {
        const assigned = await assignBillingAccount(pool, id, account);
        print(
          { assigned, id, billing_account_id: account },
          assigned ? `item ${id} will be billed to ${terminalSafe(account)} when replayed` : `no pending no_billing_account item ${id}`,
        );
        return assigned ? EXIT_OK : EXIT_PROBLEM;
      });
    }
    if (action === "list") {
      return withDatabase(async ({ pool }) => {
        const rows = await listQuarantined(pool, { reason: flags.reason, limit: 1000, includeReplayed: flags.all });
        print(
          rows,
          rows.length === 0
            ? "quarantine is empty"
            : table(
                ["id", "quarantined at", "stage", "reason", "idempotency key", "state"],
                rows.map((row) => [
                  row.id,
                  row.createdAt.toISOString(),
                  row.stage,
                  row.reason,
                  truncate(row.idempotencyKey ?? "-", 48),
                  row.replayedAt ? "replayed" : "pending",
                ]),
              ),
        );
        return EXIT_OK;
      });
    }
    if (action === "replay") {
      const waitText = flags.wait ?? String(DEFAULT_REPLAY_WAIT_SECONDS);
      if (!/^\d{1,4}$/.test(waitText) || Number(waitText) > MAX_REPLAY_WAIT_SECONDS) {
        return usageError(`quarantine replay: --wait takes whole seconds from 0 to ${MAX_REPLAY_WAIT_SECONDS}`);
      }
      const { billingAccountFrom } = settingsOrExit(parseOpsEnv);
      try {
        return await withDatabase(({ pool }) =>
          withQueue(async (queue) => {
            const shown = flags.json ? undefined : progress("replay");
            const run = await replayQuarantined(pool, queue, {
              billingAccountFrom,
              reason: flags.reason,
              waitMs: Number(waitText) * 1000,
              onProgress: (done) => shown?.update(`sent ${done.replayed}, refused before sending ${done.refusedBeforeSending}`),
            });
            shown?.done();
            if (!run.ran) {
              process.stderr.write("quarantine replay: another replay is running (it holds the replay lock); nothing was sent\n");
              return EXIT_PROBLEM;
            }
            printReplayReport(run.report);
            const { refusedAgain, stillPending, refusedBeforeSending } = run.report;
            return refusedAgain + stillPending + refusedBeforeSending === 0 ? EXIT_OK : EXIT_PROBLEM;
          }),
        );
      } catch (error) {
        // PostgreSQL or Redis failing mid-run: one line, not a stack. What was sent is marked and
        // charged at most once, so replaying again is safe.
        process.stderr.write(`quarantine replay failed: ${terminalSafe((error as Error).message)}\n`);
        return EXIT_PROBLEM;
      }
    }
    return usageError("quarantine needs list, assign or replay");
  },

  async price([file]) {
    if (!file) return usageError("price needs a file with LiteLLM payloads (JSON, JSON array or ndjson)");
    const { billingAccountFrom } = settingsOrExit(parsePricingEnv);
    const book = priceBookOrExit();
    // The operator's own file: no item limit.
    const body = parseCallbackBody(readFileSync(file, "utf8"), { maxItems: Number.POSITIVE_INFINITY });
    if (!body.ok) return usageError(`${file}: ${body.message}`);
    let problems = 0;
    type Explained =
      | { index: number; refused: string; issues: unknown[] }
      | { index: number; event: UsageEvent; namesTried: ReturnType<typeof candidateNames>; outcome: PricingOutcome };
    const explained = body.items.map((item, index): Explained => {
      const normalised = normaliseCallbackItem(item, { billingAccountFrom });
      if (!normalised.ok) {
        problems += 1;
        return { index, refused: normalised.rejected.reason, issues: normalised.rejected.issues };
      }
      const { event } = normalised;
      const outcome = priceUsageEvent(event, book);
      // A divergence from LiteLLM's own figure is a finding, charged or not.
      if (!outcome.priced || outcome.charge.divergence) problems += 1;
      return { index, event, namesTried: candidateNames(event), outcome };
    });
    const json = {
      price_book_hash: book.hash,
      markup: toDecimalString(book.markup),
      credits_per_usd: toDecimalString(book.creditsPerUsd),
      items: explained,
    };
    print(JSON.parse(JSON.stringify(json, (_key, value) => (typeof value === "bigint" ? value.toString() : isDecimal(value) ? toDecimalString(value) : value))), explained.map(describePricing).join("\n\n"));
    return problems === 0 ? EXIT_OK : EXIT_PROBLEM;

    function describePricing(entry: Explained): string {
      if ("refused" in entry) return `item ${entry.index}: refused (${entry.refused}) ${terminalSafe(JSON.stringify(entry.issues))}`;
      const { event, outcome, namesTried } = entry;
      const names = (list: string[]) => list.map(terminalSafe).join(", ") || "(none)";
      const head = [
        `item ${entry.index}: ${terminalSafe(event.idempotencyKey)}`,
        `  (a) price book, names tried: ${names(namesTried.price_book)}`,
        `  (b) LiteLLM's rates for the call: ${gatewayRates(event.gatewayRates) ? "model_map_value" : event.gatewayRates ? "(model_map_value prices no tokens)" : "(none)"}`,
        `  (c) cost map, names tried: ${names(namesTried.cost_map)}`,
      ].join("\n");
      if (!outcome.priced) {
        const divergence = outcome.divergence ? `\n${describeDivergence(outcome.divergence)}` : "";
        return `${head}\n  not priced (${outcome.reason}): ${terminalSafe(outcome.message)}${divergence}`;
      }
      const charge = outcome.charge;
      const tiers = [charge.contextTier && `context tier ${charge.contextTier}`, charge.serviceTier && `service tier ${charge.serviceTier}`].filter(Boolean);
      const entryLine = charge.priceEntry
        ? `  answered by step ${charge.rateStep}: entry ${terminalSafe(charge.priceEntry)}${tiers.length ? `, ${tiers.join(", ")}` : ""}`
        : `  ${charge.pricingSource}${charge.reason ? `: ${terminalSafe(charge.reason)}` : ""}`;
      const reported = charge.reportedCostUsd === null ? "none" : `$${toDecimalString(charge.reportedCostUsd)}`;
      return [
        head,
        entryLine,
        ...describeLines(charge.lines),
        `  cost $${toDecimalString(charge.providerCostUsd)} × markup ${toDecimalString(book.markup)} × ${toDecimalString(book.creditsPerUsd)} credits/USD → ${charge.chargedCredits} credits (rounded up)`,
        `  LiteLLM reported ${reported}${charge.divergence ? "" : ", no divergence"}`,
        ...(charge.divergence ? [describeDivergence(charge.divergence)] : []),
        ...(charge.priceEntry && charge.reason ? [`  charged: ${terminalSafe(charge.reason)}`] : []),
      ].join("\n");
    }

    function describeLines(lines: PricedLine[]): string[] {
      return lines.map(
        (line) =>
          `  ${line.tokenClass.padEnd(16)} ${String(line.tokens).padStart(9)} × ${toDecimalString(line.rateUsd)} (${terminalSafe(line.rateField)}) = ${toDecimalString(line.costUsd)}`,
      );
    }

    function describeDivergence(divergence: Divergence): string {
      return [
        `  divergence: at the gateway's own rates (step ${divergence.step}, ${terminalSafe(divergence.entry)}) $${toDecimalString(divergence.gatewayCostUsd)} = ${divergence.gatewayCredits} credits; LiteLLM reported ${divergence.reportedCredits} credits`,
        ...describeLines(divergence.lines).map((line) => `  ${line}`),
      ].join("\n");
    }
  },
};

function isDecimal(value: unknown): value is { coefficient: bigint; scale: number } {
  return typeof value === "object" && value !== null && "coefficient" in value && "scale" in value;
}

const [command, ...args] = words;
if (command === undefined) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(flags.help ? EXIT_OK : EXIT_USAGE);
}
if (flags.help) {
  const help = HELP[command];
  process.stdout.write(help ? `usage: npm run ops -- ${help}\n  --json  machine-readable output\n` : `${USAGE}\n`);
  process.exit(help ? EXIT_OK : EXIT_USAGE);
}
const run = commands[command];
if (!run) usageError(`unknown command ${command}`);
process.exit(await run(args));

function printReplayReport(report: ReplayReport): void {
  const refusals = report.refusals.map(
    (refusal) => `  item ${refusal.id} (${terminalSafe(refusal.idempotencyKey ?? "no key")}): ${terminalSafe(refusal.reason)} ${terminalSafe(JSON.stringify(refusal.issues))}`,
  );
  const human = [
    `sent ${report.replayed} item(s): ${report.charged} charged, ${report.alreadyCharged} already charged, ${report.refusedAgain} refused again, ${report.uncharged} not charged (failed calls), ${report.stillPending} still pending`,
    `${report.refusedBeforeSending} refused before sending${refusals.length < report.refusedBeforeSending ? ` (the first ${refusals.length} listed)` : ""}`,
    ...refusals,
  ].join("\n");
  print(report, human);
}

function printGatewayReport(report: GatewayReport): void {
  const days = [...report.days.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  const json = {
    since: report.since.toISOString(),
    until: report.until.toISOString(),
    days: Object.fromEntries(days.map(([day, counts]) => [day, countsJson(counts)])),
    total: countsJson(report.total),
    receipts_without_litellm_row: report.receiptsWithoutRow,
    applied: report.applied,
  };
  const row = (label: string, counts: GatewayReport["total"]) => {
    const c = countsJson(counts);
    return [label, c.litellm_calls, c.billed, c.quarantined, c.missing, `$${c.missing_spend_usd}`, c.missing_credits, c.missing_unpriced];
  };
  const human = [
    table(
      ["day (UTC)", "in LiteLLM", "billed", "quarantined", "missing", "missing spend", "missing credits", "unpriced"],
      [...days.map(([day, counts]) => row(day, counts)), row("total", report.total)],
    ),
    `${report.receiptsWithoutRow} receipt(s) in the window with no LiteLLM row (LiteLLM writes its log a minute or more late)`,
    report.applied > 0 ? `sent ${report.applied} call(s) to be billed` : report.total.missing > 0 ? "run again with --apply to bill them" : "nothing missing",
  ].join("\n");
  print(json, human);
}
