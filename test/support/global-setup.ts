import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { TestProject } from "vitest/node";
import { runMigrations } from "../../src/platform/db/migrate.js";
import { adminQuery, databaseUrlFor } from "./test-env.js";

declare module "vitest" {
  export interface ProvidedContext {
    templateDatabase: string;
  }
}

/**
 * Builds the migrated template database that every test file copies. Its name is this run's
 * own, so two runs against one PostgreSQL never drop each other's template.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Tests that start processes run the build, as the npm scripts do: make it current.
  execFileSync("node_modules/.bin/tsc", ["-p", "tsconfig.build.json"], { stdio: "inherit" });
  const template = `spend_ingest_template_${randomBytes(4).toString("hex")}`;
  await adminQuery(`CREATE DATABASE ${template}`);
  await runMigrations(databaseUrlFor(template));
  project.provide("templateDatabase", template);
  return () => adminQuery(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
}

