import { Command } from "commander";
import { recordReversal } from "../books/reversals.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { settingsOrExit } from "../platform/process.js";
import { act, EXIT_OK, EXIT_PROBLEM, idArgument, type OutputOptions, positiveInteger, printer, usageError, withDatabase } from "./context.js";
import { statedReason } from "../usage/storable-text.js";
import { exactJsonInteger, terminalSafe } from "./output.js";

export const reverseCommand = act(
  new Command("reverse")
    .description("give a charge back in whole or in part, once per reference")
    .argument("<idempotency-key>", "the receipt's key (LiteLLM's call id)")
    .argument("<reference>", "unique per reversal: the same reference again gives nothing back")
    .requiredOption("--reason <text>", "why: a provider outage, a support gesture")
    .option("--credits <n>", "how much to give back; the whole charge when left out")
    .addHelpText(
      "after",
      "\nThe credits pay the account's debt first, then go back to the charge's buckets still live; the rest arrives evergreen.\nexit codes: 0 given back (or before), 1 no such receipt, past the charge or a conflict, 2 bad usage",
    ),
  async (keyText: string, referenceText: string, flags: OutputOptions & { reason: string; credits?: string }) => {
    const print = printer(flags);
    const key = idArgument("reverse", "idempotency-key", keyText);
    const reference = idArgument("reverse", "reference", referenceText);
    // The API's own rule for a reason, so a reason the CLI takes is one the API would take.
    const reason = statedReason(1024).safeParse(flags.reason);
    if (!reason.success) return usageError(`reverse: --reason ${reason.error.issues[0]?.message ?? "is invalid"}`);
    let credits: bigint | null = null;
    if (flags.credits !== undefined) {
      credits = positiveInteger(flags.credits, MAX_CREDITS) ?? usageError(`reverse: --credits must be a whole number from 1 to ${MAX_CREDITS}`);
    }
    const { enforcement, ...settings } = settingsOrExit(["database", "enforcement"]);
    return withDatabase(settings, async ({ pool }) => {
      const result = await recordReversal(pool, { idempotencyKey: key, reference, reason: flags.reason, credits }, enforcement);
      switch (result.outcome) {
        case "unknown_receipt":
          print({ outcome: result.outcome, idempotency_key: key }, `no receipt for idempotency key ${terminalSafe(key)}`);
          return EXIT_PROBLEM;
        case "exceeds_charge":
          print(
            { outcome: result.outcome, charged_credits: exactJsonInteger(result.chargedCredits), reversed_credits: exactJsonInteger(result.reversedCredits) },
            `refused: the charge was ${result.chargedCredits} and ${result.reversedCredits} of it is given back already; nothing was given back`,
          );
          return EXIT_PROBLEM;
        case "out_of_range":
          print({ outcome: result.outcome, balance_credits: exactJsonInteger(result.balanceCredits) }, `refused: the balance would pass ${MAX_CREDITS} credits; nothing was given back`);
          return EXIT_PROBLEM;
        case "conflict":
          print(
            { outcome: result.outcome, reference, idempotency_key: result.reversal.idempotencyKey, credits: exactJsonInteger(result.reversal.credits) },
            `conflict: reference ${terminalSafe(reference)} was used for ${result.reversal.credits} credits of ${terminalSafe(result.reversal.idempotencyKey)}`,
          );
          return EXIT_PROBLEM;
        default: {
          const json = {
            outcome: result.outcome,
            idempotency_key: key,
            billing_account_id: result.reversal.billingAccountId,
            credits: exactJsonInteger(result.reversal.credits),
            reference: result.reversal.reference,
            reversed_credits: exactJsonInteger(result.reversedCredits),
            balance_credits: exactJsonInteger(result.balanceCredits),
          };
          print(json, `${result.outcome}: ${result.reversal.credits} of ${terminalSafe(key)} given back; ${terminalSafe(result.reversal.billingAccountId)} balance ${result.balanceCredits}`);
          return EXIT_OK;
        }
      }
    });
  },
);
