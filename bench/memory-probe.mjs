/**
 * A preload for a service process under the bench, never shipped: where its resident set goes.
 * Plain JavaScript so that it loads with `--import` into the build's node without tsx, whose own
 * heap would be part of what it measures.
 *
 *   npm run bench -- --node-args="--import ./bench/memory-probe.mjs"
 *   node --import tsx bench/memory-report.ts            # the files it wrote, summarised
 *
 * Every 100 ms it reads process.memoryUsage() and /proc/self/status (anonymous and file-backed
 * pages). It keeps the sample at the resident set's peak and the largest value each field reached,
 * and writes both to $MEMORY_PROBE_DIR/<entry>-<pid>.json (default /tmp/spend-ingest-memory) at
 * each new peak and every 2 s: the bench stops services with SIGTERM and may kill them, so
 * nothing waits for an exit. With MEMORY_PROBE_SNAPSHOT_MB set (or `memory-probe.mjs?snapshotMb=350`),
 * it also writes one heap snapshot the first time the resident set passes that many MB.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { constants as perfConstants, PerformanceObserver } from "node:perf_hooks";
import { getHeapStatistics, getHeapSpaceStatistics, writeHeapSnapshot } from "node:v8";

// The bench passes its services no environment of its own, so the import's query can set these too.
const query = new URL(import.meta.url).searchParams;
const directory = query.get("dir") ?? process.env.MEMORY_PROBE_DIR ?? "/tmp/spend-ingest-memory";
const snapshotAtMb = Number(query.get("snapshotMb") ?? process.env.MEMORY_PROBE_SNAPSHOT_MB ?? "0");
const entry = basename(process.argv[1] ?? "node", ".js");
const file = join(directory, `${entry}-${process.pid}.json`);
mkdirSync(directory, { recursive: true });

const MB = 1024 * 1024;
const mb = (bytes) => Math.round((bytes / MB) * 10) / 10;
let peakRss = 0;
let atPeak;
let written = 0;
let snapshotTaken = false;
const largest = {};
// Time spent in each kind of collection: what a smaller young generation or old space costs.
const gcKinds = { [perfConstants.NODE_PERFORMANCE_GC_MINOR]: "minor", [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: "major", [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental", [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb" };
const gc = {};
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = gcKinds[entry.detail?.kind] ?? "other";
    gc[kind] ??= { count: 0, ms: 0 };
    gc[kind].count += 1;
    gc[kind].ms = Math.round((gc[kind].ms + entry.duration) * 10) / 10;
  }
}).observe({ entryTypes: ["gc"] });

function statusKb(text, field) {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text);
  return match ? Number(match[1]) * 1024 : 0;
}

function sample() {
  const usage = process.memoryUsage();
  const status = readFileSync("/proc/self/status", "utf8");
  const heap = getHeapStatistics();
  const reading = {
    rss: mb(usage.rss),
    rssAnon: mb(statusKb(status, "RssAnon")),
    rssFile: mb(statusKb(status, "RssFile")),
    heapTotal: mb(usage.heapTotal),
    heapUsed: mb(usage.heapUsed),
    external: mb(usage.external),
    arrayBuffers: mb(usage.arrayBuffers),
    mallocedMemory: mb(heap.malloced_memory),
    peakMallocedMemory: mb(heap.peak_malloced_memory),
    // V8's spaces as committed (what they hold in pages) and as used (live and not yet collected).
    spaces: Object.fromEntries(getHeapSpaceStatistics().map((space) => [space.space_name, { committed: mb(space.space_size), used: mb(space.space_used_size) }])),
  };
  for (const [field, value] of Object.entries(reading)) {
    if (typeof value === "number") largest[field] = Math.max(largest[field] ?? 0, value);
  }
  const newPeak = usage.rss > peakRss;
  if (newPeak) {
    peakRss = usage.rss;
    atPeak = { uptimeS: Math.round(process.uptime()), ...reading };
  }
  // At each peak, and every 2 s for the largest values reached since.
  if (newPeak || Date.now() - written > 2000) {
    written = Date.now();
    writeFileSync(file, JSON.stringify({ entry, pid: process.pid, execArgv: process.execArgv, atPeak, largest, gc }, null, 1));
  }
  if (snapshotAtMb > 0 && !snapshotTaken && usage.rss > snapshotAtMb * MB) {
    snapshotTaken = true;
    writeHeapSnapshot(join(directory, `${entry}-${process.pid}.heapsnapshot`));
  }
}

setInterval(sample, 100).unref();
