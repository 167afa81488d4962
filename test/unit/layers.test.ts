import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, expect, it } from "vitest";

// The architecture picture of docs/reference/architecture.md, as ranks: a module may import its
// own folder and folders of a lower rank, never one at its rank or above.
const RANK: Record<string, number> = {
  usage: 0,
  platform: 1,
  pricing: 2,
  litellm: 3,
  books: 3,
  gateway: 4,
  worker: 5,
  receiver: 5,
  ops: 6,
};

const SOURCE = new URL("../../src/", import.meta.url).pathname;

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(directory, entry.name)) : entry.name.endsWith(".ts") ? [join(directory, entry.name)] : [],
  );
}

const layerOf = (file: string) => relative(SOURCE, file).split("/")[0]!;

describe("src/ layers", () => {
  it("every folder of src/ has a rank, and no import climbs to a layer at or above its own", () => {
    const files = sourceFiles(SOURCE);
    expect([...new Set(files.map(layerOf))].filter((layer) => RANK[layer] === undefined)).toEqual([]);
    const climbing = files.flatMap((file) =>
      [...readFileSync(file, "utf8").matchAll(/(?:from|import) "(\.[^"]+)"/g)].flatMap(([, specifier]) => {
        const target = normalize(join(dirname(file), specifier!));
        const [from, to] = [layerOf(file), layerOf(target)];
        return from !== to && RANK[to]! >= RANK[from]! ? [`${relative(SOURCE, file)} → ${relative(SOURCE, target)}`] : [];
      }),
    );
    expect(climbing).toEqual([]);
  });
});
