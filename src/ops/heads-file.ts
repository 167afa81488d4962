import { readFileSync } from "node:fs";
import { z } from "zod";
import { type BookHead, headsDigest } from "../books/book-heads.js";
import { usageError } from "./context.js";

/** The file `books head --json` writes and `reconcile --against` reads. */
export const headsFileSchema = z.object({
  taken_at: z.string(),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  heads: z.array(z.object({ billing_account_id: z.string(), seq: z.number().int().positive(), hash: z.string().regex(/^[0-9a-f]{64}$/) })),
});
export type HeadsFile = z.infer<typeof headsFileSchema>;

/** What `books head --json` wrote, checked whole (its digest too), or a usage error saying why not. */
export function readHeadsFile(path: string): { takenAt: string; heads: BookHead[] } {
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

