import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The fault suite has its own command and config (npm run test:faults).
    exclude: ["test/faults/**", "node_modules/**"],
    globalSetup: ["test/support/global-setup.ts"],
    // Bounds on a hang, not speed checks (those live in npm run bench): a test that runs the CLI
    // a dozen times takes over 30 s when both cores are busy.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Each file has its own database and queue prefix, so files run in parallel safely.
    fileParallelism: true,
    // The JSON report lets .ci/run print one "N passed, N failed" line for CI to read.
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
  },
});
