import { Command } from "commander";
import { settingsOrExit } from "../platform/process.js";
import { holdOpen, listEnforcement } from "../books/enforcement.js";
import { act, EXIT_OK, EXIT_PROBLEM, idArgument, type OutputOptions, printer, withDatabase } from "./context.js";
import { table, terminalSafe, truncate } from "./output.js";

const listCommand = act(
  new Command("list")
    .description("accounts' enforcement states, the keys and teams that paid for them, and the newest blocks and unblocks")
    .option("--account <account>", "only this billing account"),
  async (flags: OutputOptions & { account?: string }) => {
    const print = printer(flags);
    const account = flags.account === undefined ? undefined : idArgument("enforcement list", "--account", flags.account);
    return withDatabase(settingsOrExit(["database"]), async ({ pool }) => {
      const listing = await listEnforcement(pool, account);
      const json = {
        accounts: listing.accounts.map((row) => ({ billing_account_id: row.billingAccountId, state: row.state, changed_at: row.changedAt })),
        principals: listing.principals.map((row) => ({
          billing_account_id: row.billingAccountId,
          kind: row.kind,
          principal: row.principal,
          state: row.state,
          first_used_at: row.firstUsedAt,
          last_used_at: row.lastUsedAt,
        })),
        actions: listing.actions.map((row) => ({
          id: row.id.toString(),
          billing_account_id: row.billingAccountId,
          kind: row.kind,
          principal: row.principal,
          action: row.action,
          decided_at: row.createdAt,
          attempts: row.attempts,
          state: row.outcome ?? "pending",
          last_error: row.lastError,
        })),
      };
      const human = [
        listing.accounts.length === 0
          ? "no account has been blocked or held open"
          : table(
              ["account", "state", "since"],
              listing.accounts.map((row) => [truncate(row.billingAccountId, 40), row.state, row.changedAt?.toISOString() ?? "-"]),
            ),
        listing.principals.length === 0
          ? "no key or team has paid for it yet"
          : table(
              ["account", "kind", "key hash or team", "gateway", "first used", "last used"],
              listing.principals.map((row) => [
                truncate(row.billingAccountId, 40),
                row.kind,
                truncate(row.principal, 64),
                row.state,
                row.firstUsedAt.toISOString(),
                row.lastUsedAt.toISOString(),
              ]),
            ),
        listing.actions.length === 0
          ? "no block or unblock decided"
          : table(
              ["id", "account", "action", "kind", "key hash or team", "state", "attempts", "last error"],
              listing.actions.map((row) => [
                row.id.toString(),
                truncate(row.billingAccountId, 40),
                row.action,
                row.kind,
                truncate(row.principal, 64),
                row.outcome ?? "pending",
                row.attempts,
                truncate(row.lastError ?? "-", 60),
              ]),
            ),
      ].join("\n\n");
      print(json, human);
      return EXIT_OK;
    });
  },
);

const unblockCommand = act(
  new Command("unblock")
    .description("unblock an account's keys and teams now; it stays unblocked until its balance rises above the threshold and falls again")
    .argument("<account>", "the billing account"),
  async (accountText: string, flags: OutputOptions) => {
    const print = printer(flags);
    const account = idArgument("enforcement unblock", "account", accountText);
    return withDatabase(settingsOrExit(["database"]), async ({ pool }) => {
      const decisions = await holdOpen(pool, account);
      if (decisions === null) {
        print({ billing_account_id: account, error: "no such account" }, `no account ${terminalSafe(account)}`);
        return EXIT_PROBLEM;
      }
      const json = {
        billing_account_id: account,
        principals: decisions.map((decision) => ({
          kind: decision.kind,
          principal: decision.principal,
          outcome: decision.action === "unblock" ? "unblock_queued" : decision.told === "blocked" ? "stays_blocked" : "not_blocked",
          blocked_by: decision.blockedBy,
        })),
      };
      const lines = decisions.map((decision) => {
        const who = `${decision.kind} ${terminalSafe(decision.principal)}`;
        if (decision.action === "unblock") return `  ${who}: unblock queued (workers send it to LiteLLM)`;
        if (decision.told === "blocked") return `  ${who}: stays blocked, it also pays for ${terminalSafe(decision.blockedBy ?? "-")}, which is blocked`;
        return `  ${who}: not blocked`;
      });
      const state = "is held open until its balance rises above the threshold";
      print(
        json,
        decisions.length === 0
          ? `${terminalSafe(account)} ${state}; no key or team has paid for it`
          : [`${terminalSafe(account)} ${state}:`, ...lines].join("\n"),
      );
      return decisions.some((decision) => decision.action === null && decision.told === "blocked") ? EXIT_PROBLEM : EXIT_OK;
    });
  },
);

export const enforcementCommand = new Command("enforcement")
  .description("blocks of depleted accounts' keys and teams at LiteLLM (ENFORCE_ON_DEPLETED)")
  .addCommand(listCommand)
  .addCommand(unblockCommand);
