import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** A path below the project's root (where package.json is), whether the code runs from src/ or from the build in dist/. */
export function projectPath(...parts: string[]): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(directory, "package.json"))) {
    const parent = dirname(directory);
    if (parent === directory) throw new Error("no package.json above the running code");
    directory = parent;
  }
  return join(directory, ...parts);
}
