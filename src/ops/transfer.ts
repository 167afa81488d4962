import { Command, Option } from "commander";
import { expiryProblem } from "../books/credit-buckets.js";
import { recordTransfer } from "../books/transfers.js";
import { MAX_CREDITS } from "../platform/db/credit-bounds.js";
import { TRANSFER_EXPIRATIONS, type TransferExpiration } from "../platform/db/ledger-kinds.js";
import { settingsOrExit } from "../platform/process.js";
import { act, EXIT_OK, EXIT_PROBLEM, idArgument, type OutputOptions, positiveInteger, printer, usageError, withDatabase } from "./context.js";
import { exactJsonInteger, terminalSafe } from "./output.js";
import { RFC_3339 } from "./grant.js";

type TransferFlags = OutputOptions & { expiration: TransferExpiration; expiresAt?: string; allowOverdraft?: boolean };

export const transferCommand = act(
  new Command("transfer")
    .description("move credits from one account to another, once per reference")
    .argument("<from>", "the source account")
    .argument("<to>", "the destination account")
    .argument("<credits>", `a whole number from 1 to ${MAX_CREDITS}`)
    .argument("<reference>", "unique per transfer: the same reference again moves nothing")
    .addOption(
      new Option("--expiration <how>", "preserve: the source buckets' expiries; none: never; fixed: at --expires-at")
        .choices(TRANSFER_EXPIRATIONS)
        .default("preserve"),
    )
    .option("--expires-at <time>", "RFC 3339, in the future: with --expiration fixed, and only then")
    .option("--allow-overdraft", "let the source go below zero rather than refuse")
    .addHelpText("after", "\nexit codes: 0 transferred (or before), 1 refused (insufficient credits, out of range) or a conflict, 2 bad usage"),
  async (fromText: string, toText: string, creditsText: string, referenceText: string, flags: TransferFlags) => {
    const print = printer(flags);
    const credits = positiveInteger(creditsText, MAX_CREDITS);
    if (credits === undefined) return usageError(`transfer: credits must be a whole number from 1 to ${MAX_CREDITS}`);
    const from = idArgument("transfer", "from", fromText);
    const to = idArgument("transfer", "to", toText);
    const reference = idArgument("transfer", "reference", referenceText);
    if (from === to) return usageError("transfer: <to> must be another account than <from>");
    let expiresAt: Date | null = null;
    if (flags.expiration === "fixed") {
      if (flags.expiresAt === undefined) return usageError("transfer: --expiration fixed needs --expires-at");
      expiresAt = RFC_3339.test(flags.expiresAt) ? new Date(flags.expiresAt) : new Date(NaN);
      const problem = expiryProblem(expiresAt);
      if (problem !== null) return usageError(`transfer: --expires-at ${problem} (RFC 3339 with an offset, such as 2027-07-01T00:00:00Z)`);
    } else if (flags.expiresAt !== undefined) {
      return usageError("transfer: --expires-at only with --expiration fixed");
    }
    const { enforcement, lowBalanceThresholds, ...settings } = settingsOrExit(["database", "enforcement", "balanceAlerts"]);
    return withDatabase(settings, async ({ pool }) => {
      const result = await recordTransfer(
        pool,
        { fromAccountId: from, toAccountId: to, credits, reference, expiration: flags.expiration, expiresAt, allowOverdraft: flags.allowOverdraft === true },
        { enforcement, lowBalanceThresholds },
      );
      if (result.outcome === "insufficient_credits") {
        print(
          { outcome: result.outcome, available_credits: exactJsonInteger(result.availableCredits) },
          `refused: ${terminalSafe(from)} has ${result.availableCredits} credits available; nothing was moved (--allow-overdraft to go below zero)`,
        );
        return EXIT_PROBLEM;
      }
      if (result.outcome === "out_of_range") {
        const json = { outcome: result.outcome, billing_account_id: result.billingAccountId, balance_credits: exactJsonInteger(result.balanceCredits) };
        print(json, `refused: the balance of ${terminalSafe(result.billingAccountId)} would pass ±${MAX_CREDITS} credits; nothing was moved`);
        return EXIT_PROBLEM;
      }
      const { transfer } = result;
      const json = {
        outcome: result.outcome,
        from: transfer.fromAccountId,
        to: transfer.toAccountId,
        credits: exactJsonInteger(transfer.credits),
        reference: transfer.reference,
        expiration: transfer.expiration,
        expires_at: transfer.expiresAt?.toISOString() ?? null,
        allow_overdraft: transfer.allowOverdraft,
        from_balance_credits: result.outcome === "conflict" ? null : exactJsonInteger(result.fromBalance),
        to_balance_credits: result.outcome === "conflict" ? null : exactJsonInteger(result.toBalance),
      };
      if (result.outcome === "conflict") {
        print(json, `conflict: reference ${terminalSafe(reference)} was used for ${transfer.credits} credits from ${terminalSafe(transfer.fromAccountId)} to ${terminalSafe(transfer.toAccountId)}`);
        return EXIT_PROBLEM;
      }
      print(json, `${result.outcome}: ${terminalSafe(from)} balance ${result.fromBalance}, ${terminalSafe(to)} balance ${result.toBalance}`);
      return EXIT_OK;
    });
  },
);
