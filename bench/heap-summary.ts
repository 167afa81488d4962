/**
 * What a V8 heap snapshot holds, by kind and constructor (self sizes), without a dependency:
 *
 *   node --import tsx bench/heap-summary.ts /tmp/spend-ingest-memory/usage-worker-123.heapsnapshot [--top 25]
 *
 * A snapshot comes from bench/memory-probe.mjs (MEMORY_PROBE_SNAPSHOT_MB), `node
 * --heapsnapshot-signal=SIGUSR2`, or v8.writeHeapSnapshot(). Self sizes add up to the heap in use;
 * they say what the bytes are (strings, arrays, a constructor's objects), not who keeps them.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: flags, positionals } = parseArgs({ options: { top: { type: "string", default: "25" } }, allowPositionals: true });
const top = Number(flags.top);

type Snapshot = {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
};

for (const path of positionals) {
  const { snapshot, nodes, strings } = JSON.parse(readFileSync(path, "utf8")) as Snapshot;
  const fields = snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const typeNames = snapshot.meta.node_types[0];
  const byType = new Map<string, { bytes: number; count: number }>();
  const byName = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  const add = (into: Map<string, { bytes: number; count: number }>, key: string, bytes: number) => {
    const row = into.get(key) ?? { bytes: 0, count: 0 };
    row.bytes += bytes;
    row.count += 1;
    into.set(key, row);
  };
  for (let at = 0; at < nodes.length; at += width) {
    const type = typeNames[nodes[at + typeAt]!]!;
    const bytes = nodes[at + sizeAt]!;
    total += bytes;
    add(byType, type, bytes);
    // Strings are named by their text: counted together; objects by their constructor.
    const name = type === "string" || type === "concatenated string" || type === "sliced string" ? `(${type})` : `${type}: ${strings[nodes[at + nameAt]!]!.slice(0, 80)}`;
    add(byName, name, bytes);
  }
  const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1).padStart(7);
  const show = (title: string, rows: Map<string, { bytes: number; count: number }>, limit: number) => {
    process.stdout.write(`\n${title}\n`);
    for (const [key, row] of [...rows].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, limit)) {
      process.stdout.write(`${mb(row.bytes)} MB ${String(row.count).padStart(9)}  ${key}\n`);
    }
  };
  process.stdout.write(`${path}: ${mb(total)} MB in ${nodes.length / width} objects\n`);
  show("by kind", byType, 20);
  show("by constructor", byName, top);
}
