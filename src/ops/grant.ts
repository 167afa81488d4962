import { Command } from "commander";
import { expiryProblem } from "../books/credit-buckets.js";
import { recordGrant } from "../books/grants.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { settingsOrExit } from "../platform/process.js";
import { act, EXIT_OK, EXIT_PROBLEM, idArgument, type OutputOptions, positiveInteger, printer, usageError, withDatabase } from "./context.js";
import { exactJsonInteger, terminalSafe } from "./output.js";

/** What --expires-at takes: RFC 3339 with an offset, as the API takes expires_at. */
export const RFC_3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export const grantCommand = act(
  new Command("grant")
    .description("add credits to an account, once per reference")
    .argument("<account>", "the billing account")
    .argument("<credits>", `a whole number from 1 to ${MAX_CREDITS}`)
    .argument("<reference>", "unique per grant: the same reference again grants nothing")
    .option("--expires-at <time>", "RFC 3339 (2027-07-01T00:00:00Z): what is left then leaves the balance; never, when left out")
    .option("--priority <n>", "consumption order, 0–100: lower is spent first", "50"),
  async (accountText: string, creditsText: string, referenceText: string, flags: OutputOptions & { expiresAt?: string; priority: string }) => {
    const print = printer(flags);
    if (!accountText || !creditsText || !referenceText) {
      return usageError("grant needs <account> <credits (a positive integer)> <reference>");
    }
    const credits = positiveInteger(creditsText, MAX_CREDITS);
    if (credits === undefined) return usageError(`grant: credits must be a whole number from 1 to ${MAX_CREDITS}`);
    const account = idArgument("grant", "account", accountText);
    const reference = idArgument("grant", "reference", referenceText);
    const priority = /^\d{1,3}$/.test(flags.priority) ? Number(flags.priority) : NaN;
    if (!(priority >= 0 && priority <= 100)) return usageError("grant: --priority must be a whole number from 0 to 100");
    let expiresAt: Date | null = null;
    if (flags.expiresAt !== undefined) {
      expiresAt = RFC_3339.test(flags.expiresAt) ? new Date(flags.expiresAt) : new Date(NaN);
      const problem = expiryProblem(expiresAt);
      if (problem !== null) return usageError(`grant: --expires-at ${problem} (RFC 3339 with an offset, such as 2027-07-01T00:00:00Z)`);
    }
    const { enforcement, ...settings } = settingsOrExit(["database", "enforcement"]);
    return withDatabase(settings, async ({ pool }) => {
      const result = await recordGrant(
        pool,
        { billingAccountId: account, credits, reference, reason: "ops grant", terms: { priority, expiresAt } },
        enforcement,
      );
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
        expires_at: result.grant.expiresAt?.toISOString() ?? null,
        priority: result.grant.priority,
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
);
