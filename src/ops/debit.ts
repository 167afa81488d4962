import { Command } from "commander";
import { recordDebit } from "../books/debits.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { settingsOrExit } from "../platform/process.js";
import { act, EXIT_OK, EXIT_PROBLEM, idArgument, type OutputOptions, positiveInteger, printer, usageError, withDatabase } from "./context.js";
import { statedReason } from "../usage/storable-text.js";
import { exactJsonInteger, terminalSafe } from "./output.js";

export const debitCommand = act(
  new Command("debit")
    .description("charge an account for something that is not a model call (a seat fee, a settlement), once per reference")
    .argument("<account>", "the billing account")
    .argument("<credits>", `a whole number from 1 to ${MAX_CREDITS}`)
    .argument("<reference>", "unique per debit: the same reference again charges nothing")
    .requiredOption("--reason <text>", "what the charge is for")
    .addHelpText("after", "\nNever refused for lack of credit: what the live buckets do not cover is debt.\nexit codes: 0 debited (or debited before), 1 refused or a conflict, 2 bad usage"),
  async (accountText: string, creditsText: string, referenceText: string, flags: OutputOptions & { reason: string }) => {
    const print = printer(flags);
    const credits = positiveInteger(creditsText, MAX_CREDITS);
    if (credits === undefined) return usageError(`debit: credits must be a whole number from 1 to ${MAX_CREDITS}`);
    const account = idArgument("debit", "account", accountText);
    const reference = idArgument("debit", "reference", referenceText);
    // The API's own rule for a reason, so a reason the CLI takes is one the API would take.
    const reason = statedReason(1024).safeParse(flags.reason);
    if (!reason.success) return usageError(`debit: --reason ${reason.error.issues[0]?.message ?? "is invalid"}`);
    const { enforcement, lowBalanceThresholds, ...settings } = settingsOrExit(["database", "enforcement", "balanceAlerts"]);
    return withDatabase(settings, async ({ pool }) => {
      const result = await recordDebit(pool, { billingAccountId: account, credits, reference, reason: flags.reason }, { enforcement, lowBalanceThresholds });
      if (result.outcome === "out_of_range") {
        const json = { outcome: result.outcome, billing_account_id: account, balance_credits: exactJsonInteger(result.balanceCredits) };
        print(json, `refused: the balance of ${terminalSafe(account)} (${result.balanceCredits}) would pass -${MAX_CREDITS} credits; nothing was debited`);
        return EXIT_PROBLEM;
      }
      const json = {
        outcome: result.outcome,
        billing_account_id: result.debit.billingAccountId,
        credits: exactJsonInteger(result.debit.credits),
        reference: result.debit.reference,
        reason: result.debit.reason,
        balance_credits: result.outcome === "conflict" ? null : exactJsonInteger(result.balanceCredits),
      };
      if (result.outcome === "conflict") {
        print(json, `conflict: reference ${terminalSafe(reference)} was used for ${result.debit.credits} credits from ${terminalSafe(result.debit.billingAccountId)}`);
        return EXIT_PROBLEM;
      }
      print(json, `${result.outcome}: ${terminalSafe(account)} balance ${result.balanceCredits}`);
      return EXIT_OK;
    });
  },
);
