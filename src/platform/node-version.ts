/**
 * The oldest Node.js every entry point runs on; package.json's `engines` says the same (a test
 * holds them together). 22.12 is the first 22.x that loads an ES module from `require()` without
 * a flag, and the receiver needs it: @fastify/static (the queue UI) requires content-disposition,
 * an ES module, so Node 22.0–22.11 stop with ERR_REQUIRE_ESM before serving. Node 20.19+ can do
 * the same but is past its end of life, and the dependencies that need it (content-disposition,
 * cookie) and the test runner (vitest) declare 22 or newer.
 */
export const MINIMUM_NODE_VERSION = "22.12.0";

/** Whether `version` (process.versions.node: `22.12.0`, `24.0.0-pre`) is `minimum` or newer. */
export function nodeVersionSuffices(version: string, minimum: string = MINIMUM_NODE_VERSION): boolean {
  const parts = (text: string) => text.split(/[.-]/).slice(0, 3).map(Number);
  const [have, need] = [parts(version), parts(minimum)];
  for (let index = 0; index < 3; index++) {
    if (have[index]! !== need[index]!) return have[index]! > need[index]!;
  }
  return true;
}

// Every entry point imports this module first, and ES modules run in import order: an older Node
// stops here with one line instead of a stack trace from whichever dependency fails first.
if (!nodeVersionSuffices(process.versions.node)) {
  process.stderr.write(`spend-ingest: Node.js ${MINIMUM_NODE_VERSION} or newer is required; this is Node.js ${process.versions.node} (${process.execPath})\n`);
  process.exit(2);
}
