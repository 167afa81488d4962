/** Output helpers for the operator CLI: aligned tables, and progress a terminal can redraw. */

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((row) => row.map(String))];
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
      lastText = text;
      if (onTerminal) {
        process.stderr.write(`\r\x1b[2K${label}: ${text}`);
      } else if (Date.now() - lastPlainLine >= 1000) {
        lastPlainLine = Date.now();
        process.stderr.write(`${label}: ${text}\n`);
      }
    },
    done() {
      if (onTerminal && lastText) process.stderr.write("\n");
    },
  };
}

export function truncate(text: string, length: number): string {
  const oneLine = text.replace(/\s+/g, " ").trim();
  return oneLine.length > length ? `${oneLine.slice(0, length - 1)}…` : oneLine;
}
