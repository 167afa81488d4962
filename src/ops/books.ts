import { Command } from "commander";
import { settingsOrExit } from "../platform/process.js";
import { headsDigest, readBookHeads } from "../books/book-heads.js";
import { act, EXIT_OK, EXIT_PROBLEM, type OutputOptions, printer, withDatabase } from "./context.js";
import type { HeadsFile } from "./heads-file.js";
import { table, terminalSafe } from "./output.js";

const headCommand = act(
  new Command("head").description("every account's head (sequence, hash) and their digest: keep it elsewhere, check it with reconcile --against"),
  async (flags: OutputOptions) => {
    const print = printer(flags);
    return withDatabase(settingsOrExit(["database"]), async ({ pool }) => {
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
);

export const booksCommand = new Command("books").description("the books' heads").addCommand(headCommand);
