import { execFileSync } from "node:child_process";

/** The scenarios start the build's processes, as the npm scripts do: make it current. */
export default function setup(): void {
  execFileSync("node_modules/.bin/tsc", ["-p", "tsconfig.build.json"], { stdio: "inherit" });
}
