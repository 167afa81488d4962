import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { TEST_REDIS_URL } from "./test-env.js";

export type OpsResult = { code: number | string; stdout: string; stderr: string };

/**
 * Runs the built ops CLI against a test database (and a queue prefix named after it); `code`
 * is its exit code, or Node's error code when it could not be started.
 */
export async function runOps(database: { url: string; name: string }, ...args: string[]): Promise<OpsResult> {
  return runOpsWithEnv({ DATABASE_URL: database.url, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: database.name }, ...args);
}

/** Runs the built ops CLI with these settings and no others. */
export async function runOpsWithEnv(env: Record<string, string>, ...args: string[]): Promise<OpsResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ["dist/bin/ops.js", ...args], { env: { PATH: process.env.PATH, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as OpsResult;
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}
