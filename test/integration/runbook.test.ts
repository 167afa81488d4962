import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { recordGrant } from "../../src/books/grants.js";
import { useTestDatabase } from "../support/harness.js";
import { TEST_REDIS_URL } from "../support/test-env.js";

const db = useTestDatabase();

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RUNBOOK = join(ROOT, "docs/guides/runbook.md");

/** The shell block under the runbook's marker for this test, exactly as a reader copies it. */
function checkedBlock(markdown: string): string {
  const block = /<!-- checked by test\/integration\/runbook\.test\.ts[^>]*-->\n```sh\n([\s\S]*?)\n```/.exec(markdown);
  if (block === null) throw new Error(`${RUNBOOK} has no \`\`\`sh block under a "checked by test/integration/runbook.test.ts" marker`);
  return block[1]!;
}

describe("the runbook's checkpoint procedure, run as it is written", () => {
  it("keeps every account's head in a file of its own and reconciles the books against it", async () => {
    await recordGrant(db.pool, { billingAccountId: "acct-runbook-a", credits: 100n, reference: "runbook-a", reason: null });
    await recordGrant(db.pool, { billingAccountId: "acct-runbook-b", credits: 200n, reference: "runbook-b", reason: null });
    // A checkout as the operator has one: npm finds the package, and its build, from where it runs.
    const checkout = mkdtempSync(join(tmpdir(), "spend-ingest-runbook-"));
    for (const entry of ["package.json", "dist"]) symlinkSync(join(ROOT, entry), join(checkout, entry));

    const { stdout } = await promisify(execFile)("bash", ["-eu", "-c", checkedBlock(readFileSync(RUNBOOK, "utf8"))], {
      cwd: checkout,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DATABASE_URL: db.url,
        REDIS_URL: TEST_REDIS_URL,
        QUEUE_PREFIX: db.name,
        npm_config_update_notifier: "false",
      },
    });

    const [headsFile, ...others] = readdirSync(checkout).filter((name) => name.startsWith("heads-"));
    expect(others).toEqual([]);
    const stored = JSON.parse(readFileSync(join(checkout, headsFile!), "utf8"));
    expect(stored.heads.map((head: { billing_account_id: string }) => head.billing_account_id)).toEqual(["acct-runbook-a", "acct-runbook-b"]);
    // Only reconcile's own line: npm's banner stayed out of stdout as it stayed out of the file.
    expect(stdout).toMatch(/^ok \(2 accounts, 2 heads of \S+ unchanged\)\n$/);
    rmSync(checkout, { recursive: true });
  });
});
