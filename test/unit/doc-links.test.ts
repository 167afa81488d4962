import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function markdownFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? markdownFiles(join(directory, entry.name)) : entry.name.endsWith(".md") ? [join(directory, entry.name)] : [],
  );
}

/** What a reader sees as text: code, where `[x](y)` is no link, left out. */
const prose = (markdown: string) => markdown.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "");

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const [, heading] of markdown.replace(/^```[\s\S]*?^```/gm, "").matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = heading!
      .replace(/[`*]/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
      .replace(/ /g, "-");
    let anchor = slug;
    for (let repeat = 1; anchors.has(anchor); repeat += 1) anchor = `${slug}-${repeat}`;
    anchors.add(anchor);
  }
  return anchors;
}

describe("links between the docs", () => {
  it("every relative link in README.md and docs/ names a file that exists, and a heading it has", () => {
    const files = [join(ROOT, "README.md"), ...markdownFiles(join(ROOT, "docs"))];
    const broken = files.flatMap((file) =>
      [...prose(readFileSync(file, "utf8")).matchAll(/\]\(([^)\s]+)\)/g)].flatMap(([, target]) => {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target!)) return [];
        const [path, anchor] = target!.split("#") as [string, string | undefined];
        const resolved = path === "" ? file : join(dirname(file), decodeURIComponent(path));
        const where = `${relative(ROOT, file)} → ${target}`;
        if (!existsSync(resolved)) return [`${where}: no such file`];
        if (anchor === undefined) return [];
        if (statSync(resolved).isDirectory() || !resolved.endsWith(".md")) return [`${where}: an anchor into what is not a page`];
        return headingAnchors(readFileSync(resolved, "utf8")).has(anchor) ? [] : [`${where}: no such heading`];
      }),
    );
    expect(broken).toEqual([]);
  });
});
