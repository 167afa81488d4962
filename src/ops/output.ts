import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, linkSync, lstatSync, openSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * Output helpers for the operator CLI: aligned tables, progress a terminal can redraw, the
 * escaping that keeps stored and outside text (keys, models, accounts, reasons) from acting on
 * the operator's terminal, and --out's files.
 */

// C0 (ESC, CR, LF, TAB…), DEL and C1 (CSI U+009B, OSC U+009D…) are what a terminal acts on;
// the bidi controls reorder what is shown after them. None is ever printed raw.
const DEL_C1_AND_BIDI = "\\u007f-\\u009f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069";
const UNSAFE_FOR_TERMINAL = new RegExp(`[\\u0000-\\u001f${DEL_C1_AND_BIDI}]`, "g");
// JSON.stringify escapes C0 inside strings; the C0 left in its text is its own layout.
const UNSAFE_IN_JSON_TEXT = new RegExp(`[${DEL_C1_AND_BIDI}]`, "g");

const NAMED_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** Text with every terminal control and bidi control written as a visible escape (`\x1b`, `\n`, `\u{202e}`). */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE_FOR_TERMINAL, (character) => {
    const code = character.codePointAt(0)!;
    return NAMED_ESCAPES[character] ?? (code <= 0xff ? `\\x${hex(code, 2)}` : `\\u{${hex(code, 1)}}`);
  });
}

/**
 * JSON text a terminal shows as it is: JSON.stringify escapes C0 but leaves DEL, C1 and the
 * bidi controls raw. They can only stand inside strings, where `\uXXXX` means the same.
 */
export function terminalSafeJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(UNSAFE_IN_JSON_TEXT, (character) => `\\u${hex(character.codePointAt(0)!, 4)}`);
}

/** Human output with each line made safe: our own line breaks stay, nothing else acts on the terminal. */
export function terminalSafeLines(text: string): string {
  return text.split("\n").map(terminalSafe).join("\n");
}

function hex(code: number, digits: number): string {
  return code.toString(16).padStart(digits, "0");
}

/** An integer as a JSON number when JSON carries it exactly, else as its decimal digits. */
export function exactJsonInteger(value: bigint): number | string {
  const safe = value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER);
  return safe ? Number(value) : value.toString();
}

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  // Escaped before measuring, so the columns line up with what the terminal shows.
  const cells = [headers, ...rows].map((row) => row.map((cell) => terminalSafe(String(cell))));
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? "").length)));
  return cells
    .map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join("  "))
    .join("\n");
}

/**
 * Progress of a long command on stderr: one line redrawn in place on a terminal, or plain
 * lines (at most one a second) when stderr is a file or a pipe.
 */
export function progress(label: string): { update: (text: string) => void; done: () => void } {
  const onTerminal = process.stderr.isTTY === true;
  let lastPlainLine = 0;
  let lastText = "";
  return {
    update(text) {
      lastText = terminalSafe(text);
      if (onTerminal) {
        // Our own control: return to the line's start and clear it before redrawing.
        process.stderr.write(`\r\x1b[2K${label}: ${lastText}`);
      } else if (Date.now() - lastPlainLine >= 1000) {
        lastPlainLine = Date.now();
        process.stderr.write(`${label}: ${lastText}\n`);
      }
    },
    done() {
      if (onTerminal && lastText) process.stderr.write("\n");
    },
  };
}

/** One line of at most `length` characters, escaped first so a newline shows as `\n` and the length counts what is shown. */
export function truncate(text: string, length: number): string {
  const oneLine = terminalSafe(text).replace(/\s+/g, " ").trim();
  return oneLine.length > length ? `${oneLine.slice(0, length - 1)}…` : oneLine;
}

/** Why `path` cannot be a new --out file (it exists, or its folder does not), or undefined when it can. */
export function newFileProblem(path: string): string | undefined {
  try {
    lstatSync(path);
    return `${path} already exists; --out never replaces a file (choose a new name)`;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") return `cannot use ${path}: ${(error as NodeJS.ErrnoException).code}`;
  }
  try {
    return lstatSync(dirname(path)).isDirectory() ? undefined : `${dirname(path)} is not a folder`;
  } catch {
    return `the folder ${dirname(path)} does not exist`;
  }
}

/**
 * Writes `text` to `path`, which must not exist, so that the file is either absent or whole: a
 * checkpoint such as `books head --out` is evidence, and half a file, or a newer file in place of
 * an older one, would lose it. Written and flushed under a temporary name beside it, then
 * hard-linked to `path`, which fails rather than replace a file that appeared meanwhile (a rename
 * would replace it).
 */
export function writeNewFile(path: string, text: string): void {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const descriptor = openSync(temporary, "wx", 0o644);
  try {
    writeSync(descriptor, text);
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
  try {
    linkSync(temporary, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    throw new Error(`${path} appeared while the command ran; --out never replaces a file, so the output was not written`);
  } finally {
    unlinkSync(temporary);
  }
  // The new name itself survives a crash only once its folder is flushed.
  const folder = openSync(dirname(path), "r");
  try {
    fsyncSync(folder);
  } finally {
    closeSync(folder);
  }
}
