import { defineConfig } from "vitest/config";

/** The fault suite (`npm run test:faults`): owned PostgreSQL, Redis and processes, one scenario at a time. */
export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    globalSetup: ["test/faults/build.ts"],
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 180_000,
    reporters: ["default", "json"],
    outputFile: { json: "test-results/faults.json" },
  },
});
