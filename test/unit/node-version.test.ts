import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MINIMUM_NODE_VERSION, nodeVersionSuffices } from "../../src/platform/node-version.js";

describe("the Node.js requirement", () => {
  it("takes the minimum and anything newer, by number and not by text", () => {
    for (const version of ["22.12.0", "22.12.1", "22.13.0", "23.0.0", "24.22.3", "100.0.0", "25.0.0-pre"]) {
      expect(nodeVersionSuffices(version), version).toBe(true);
    }
    for (const version of ["22.11.0", "22.9.9", "22.0.0", "20.20.2", "20.19.0", "18.20.4", "3.0.0"]) {
      expect(nodeVersionSuffices(version), version).toBe(false);
    }
  });

  it("is the one package.json and its lock declare", () => {
    const engines = (file: string) => {
      const json = JSON.parse(readFileSync(file, "utf8")) as { engines?: { node?: string }; packages?: Record<string, { engines?: { node?: string } }> };
      return (json.packages?.[""] ?? json).engines?.node;
    };
    expect(engines("package.json")).toBe(`>=${MINIMUM_NODE_VERSION}`);
    expect(engines("package-lock.json")).toBe(`>=${MINIMUM_NODE_VERSION}`);
  });

  it("is checked by every entry point before it imports anything else", () => {
    const entries = readdirSync("bin").filter((file) => file.endsWith(".ts"));
    expect(entries.length).toBeGreaterThan(0);
    for (const entry of entries) {
      const firstImport = /^import .*$/m.exec(readFileSync(`bin/${entry}`, "utf8"))?.[0];
      expect(firstImport, entry).toBe('import "../src/platform/node-version.js";');
    }
  });
});
