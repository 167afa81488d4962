import { Command } from "commander";
import { recordGrant } from "../books/grants.js";
import { parseOpsEnv } from "../platform/config.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { settingsOrExit } from "../platform/process.js";
import { act, EXIT_OK, EXIT_PROBLEM, idArgument, type OutputOptions, positiveInteger, printer, usageError, withDatabase } from "./context.js";
import { exactJsonInteger, terminalSafe } from "./output.js";

export const grantCommand = act(
  new Command("grant")
    .description("add credits to an account, once per reference")
    .argument("<account>", "the billing account")
    .argument("<credits>", `a whole number from 1 to ${MAX_CREDITS}`)
    .argument("<reference>", "unique per grant: the same reference again grants nothing"),
  async (accountText: string, creditsText: string, referenceText: string, flags: OutputOptions) => {
    const print = printer(flags);
    if (!accountText || !creditsText || !referenceText) {
      return usageError("grant needs <account> <credits (a positive integer)> <reference>");
    }
    const credits = positiveInteger(creditsText, MAX_CREDITS);
    if (credits === undefined) return usageError(`grant: credits must be a whole number from 1 to ${MAX_CREDITS}`);
    const account = idArgument("grant", "account", accountText);
    const reference = idArgument("grant", "reference", referenceText);
    return withDatabase(async ({ pool }) => {
      const { enforcement } = settingsOrExit(parseOpsEnv);
      const result = await recordGrant(pool, { billingAccountId: account, credits, reference, reason: "ops grant" }, enforcement);
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
);
