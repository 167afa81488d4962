/**
 * The functions that cost most self time in a V8 CPU profile (`node --cpu-prof`), each with its
 * share of the samples: what the performance guide's "biggest costs" tables list.
 *
 *   node --import tsx bench/cpu-profile-top.ts <file.cpuprofile> [--top 10]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

type ProfileNode = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number };
type Profile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };

const { values: flags, positionals } = parseArgs({ options: { top: { type: "string", default: "10" } }, allowPositionals: true });
if (positionals.length !== 1) throw new Error("usage: cpu-profile-top.ts <file.cpuprofile> [--top 10]");
const profile = JSON.parse(readFileSync(positionals[0]!, "utf8")) as Profile;

// Self time by sample, each sample weighted by the time to the next one.
const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const selfMicroseconds = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, index) => {
  const delta = profile.timeDeltas[index + 1] ?? 0;
  const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
  // tsx's transform leaves every function on line 0: only the file says where it is then.
  const line = lineNumber > 0 ? `:${lineNumber + 1}` : "";
  const where = url === "" ? "" : ` ${url.replace(/^.*\/(node_modules\/|src\/|bench\/)/, "$1")}${line}`;
  const name = `${functionName || "(anonymous)"}${where}`;
  selfMicroseconds.set(name, (selfMicroseconds.get(name) ?? 0) + delta);
  total += delta;
});
const ranked = [...selfMicroseconds].sort((a, b) => b[1] - a[1]).slice(0, Number(flags.top));
console.log(`self time of ${(total / 1e6).toFixed(2)} s sampled`);
for (const [name, microseconds] of ranked) console.log(`${((100 * microseconds) / total).toFixed(1).padStart(5)} %  ${name}`);
