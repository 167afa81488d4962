/**
 * The functions that took the most CPU themselves (self time, callees excluded) in the V8 CPU
 * profiles under a directory, each subdirectory a process kind, all the profiles of a kind summed
 * (the bench's `--cpu-prof-dir DIR` writes DIR/receiver, DIR/worker and DIR/raw-worker), or one
 * .cpuprofile file (as bench/receiver-items.ts --profile writes):
 *   node --import tsx bench/profile-top.ts DIR|FILE [--top 10] [--skip-seconds 0]
 * `--skip-seconds` leaves out each profile's first seconds: a process's start (loading and linking
 * its modules) is not the steady state, and on a busy machine it takes long. The profiler samples
 * by wall clock, so on a busy machine a function's share includes time its process waited for a core.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";

type ProfileNode = { id: number; callFrame: { functionName: string; url: string; lineNumber: number } };
type Profile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };

const { values: flags, positionals } = parseArgs({ options: { top: { type: "string", default: "10" }, "skip-seconds": { type: "string", default: "0" } }, allowPositionals: true });
const root = positionals[0];
if (root === undefined) {
  process.stderr.write("usage: node --import tsx bench/profile-top.ts DIR|FILE [--top 10] [--skip-seconds 0]\n");
  process.exit(2);
}

/** Microseconds of self time by function (name, file and line), over the given profiles. */
function selfTime(files: string[]): Map<string, number> {
  const byFunction = new Map<string, number>();
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
    const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
    const skipUs = Number(flags["skip-seconds"]) * 1e6;
    let elapsedUs = 0;
    // Sample i lasts until sample i + 1 is taken (as Chrome's DevTools counts it).
    profile.samples.forEach((id, i) => {
      elapsedUs += profile.timeDeltas[i] ?? 0;
      if (elapsedUs < skipUs) return;
      const frame = frames.get(id)!;
      const place = frame.url === "" ? "" : ` ${frame.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, "$1/")}:${frame.lineNumber + 1}`;
      const name = `${frame.functionName || "(anonymous)"}${place}`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
    });
  }
  return byFunction;
}

const profilesIn = (dir: string) => readdirSync(dir).filter((name) => name.endsWith(".cpuprofile")).map((name) => join(dir, name));
const groups: Array<[string, string[]]> = statSync(root).isFile()
  ? [[basename(root), [root]]]
  : readdirSync(root).filter((name) => statSync(join(root, name)).isDirectory()).map((kind) => [kind, profilesIn(join(root, kind))]);
if (groups.length === 0) groups.push([root, profilesIn(root)]);
for (const [kind, files] of groups) {
  const byFunction = selfTime(files);
  const idle = byFunction.get("(idle)") ?? 0;
  byFunction.delete("(idle)");
  const busy = [...byFunction.values()].reduce((sum, us) => sum + us, 0);
  process.stdout.write(`\n${kind}: ${(busy / 1e6).toFixed(1)} s busy, ${(idle / 1e6).toFixed(1)} s idle\n`);
  const top = [...byFunction.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(flags.top));
  for (const [name, us] of top) process.stdout.write(`  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(7)} ms  ${name}\n`);
}
