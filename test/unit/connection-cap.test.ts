import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openFileLimitIn, readOpenFileLimit } from "../../src/platform/open-file-limit.js";
import { connectionCap, DESCRIPTOR_RESERVE } from "../../src/receiver/connection-limit.js";

const limitsWith = (soft: string, hard: string) =>
  [
    "Limit                     Soft Limit           Hard Limit           Units     ",
    "Max processes             96367                96367                processes ",
    `Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files     `,
    "Max locked memory         8388608              8388608              bytes     ",
  ].join("\n");

describe("the connection cap and the file-descriptor limit", () => {
  it("reads the soft limit of open files as the kernel states it; unlimited or unreadable is unknown", () => {
    expect(openFileLimitIn(limitsWith("1024", "4096"))).toBe(1024);
    expect(openFileLimitIn(limitsWith("unlimited", "unlimited"))).toBeUndefined();
    expect(openFileLimitIn("Max processes 1 1 processes")).toBeUndefined();
    expect(openFileLimitIn("")).toBeUndefined();
    const directory = mkdtempSync(join(tmpdir(), "spend-ingest-limits-"));
    writeFileSync(join(directory, "limits"), limitsWith("256", "256"));
    expect(readOpenFileLimit(join(directory, "limits"))).toBe(256);
    expect(readOpenFileLimit(join(directory, "no-such-file"))).toBeUndefined();
    // This very process: Linux states it, as it does for the receiver.
    expect(readOpenFileLimit()).toBeGreaterThan(0);
  });

  it("holds MAX_CONNECTIONS, or the limit less the reserve when that is lower", () => {
    expect(DESCRIPTOR_RESERVE).toBe(128);
    expect(connectionCap(1000, 1024)).toBe(896);
    expect(connectionCap(1000, 256)).toBe(128);
    expect(connectionCap(1000, 1_048_576)).toBe(1000);
    expect(connectionCap(1000, undefined)).toBe(1000);
    // No room at all: the start refuses (start.ts).
    expect(connectionCap(1000, 128)).toBe(0);
    expect(connectionCap(1000, 64)).toBeLessThan(1);
  });
});
