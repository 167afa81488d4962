import { z } from "zod";

/**
 * Text from outside that PostgreSQL stores and indexes. Keys, names and accounts are indexed
 * (PostgreSQL's btree takes ~2.7 kB per entry) and must round-trip through PostgreSQL text
 * exactly: no NUL, no lone UTF-16 surrogate. One limit for every id, at every edge, in UTF-16
 * code units (JavaScript's string length).
 */
export const MAX_ID_LENGTH = 512;

export function isStorableText(text: string): boolean {
  return text.length <= MAX_ID_LENGTH && !text.includes("\u0000") && text.isWellFormed();
}

export const STORABLE_TEXT_RULE = `at most ${MAX_ID_LENGTH} characters, no NUL, well-formed Unicode`;

// C0, DEL and C1: never part of a name, and what a terminal would act on.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

export type CanonicalId = { ok: true; value: string } | { ok: false; message: string };

/**
 * The one form of an account id, idempotency key or grant reference, the same at ingest, in
 * the account API and in the CLI: NFC, so that one name typed in two Unicode spellings is one
 * account; never trimmed or repaired, because an id that silently changes is another id.
 * Text that cannot be an id is refused with the reason.
 */
export function canonicalId(text: string): CanonicalId {
  if (!text.isWellFormed()) return { ok: false, message: "is not well-formed Unicode (it holds a lone surrogate)" };
  if (CONTROL_CHARACTER.test(text)) return { ok: false, message: "holds a control character (NUL, ESC, newline and the like)" };
  const value = text.normalize("NFC");
  if (value.trim() === "") return { ok: false, message: "is empty or blank" };
  if (value.length > MAX_ID_LENGTH) return { ok: false, message: `is longer than ${MAX_ID_LENGTH} characters` };
  return { ok: true, value };
}

/** `canonicalId` as a zod schema: the parsed value is the canonical form. */
export const canonicalIdSchema = z.string().transform((text, context) => {
  const canonical = canonicalId(text);
  if (canonical.ok) return canonical.value;
  context.addIssue({ code: "custom", message: canonical.message });
  return z.NEVER;
});

/** Free text kept beside an id (a grant's reason): anything PostgreSQL stores as it was sent. */
export const storableFreeText = (maxLength: number) =>
  z
    .string()
    .max(maxLength)
    .refine((text) => !text.includes("\u0000"), "holds NUL, which cannot be stored")
    .refine((text) => text.isWellFormed(), "is not well-formed Unicode (it holds a lone surrogate)");

/**
 * Why money moved by hand (a debit, a reversal): free text that says something, since the
 * ledger keeps it as the only account of the movement.
 */
export const statedReason = (maxLength: number) =>
  storableFreeText(maxLength).refine((text) => text.trim() !== "", "is empty: say why the credits move");
