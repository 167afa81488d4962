/**
 * The receiver's own work on one callback body, without HTTP or Redis: frame, parse, validate,
 * normalise (readCallbackItems, as the route runs it), then build the jobs and their data as
 * BullMQ writes it (JSON.stringify of each job's data). The body is the one `npm run bench`
 * posts: 512 LiteLLM items with prompt and response text. Reports CPU microseconds per event
 * (process.cpuUsage, user + system, over many rounds after a warm-up), which moves far less with
 * the neighbours' load than wall time.
 *
 *   node --import tsx bench/receiver-items.ts [--rounds 400] [--warmup 100] [--batch 512]
 *   node --import tsx bench/receiver-items.ts --profile /tmp/receiver.cpuprofile
 *   node --import tsx bench/profile-top.ts /tmp/receiver.cpuprofile
 *
 * `--profile` writes a CPU profile of the measured rounds alone (not of start-up and warm-up).
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { parseArgs } from "node:util";
import { readCallbackItems } from "../src/receiver/callback-route.js";
import { callbackJobs } from "../src/platform/queue-producer.js";
import { DEFAULT_BILLING_ACCOUNT_FROM } from "../src/platform/config.js";
import { batchBody } from "./litellm-batch.js";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "400" },
    warmup: { type: "string", default: "100" },
    batch: { type: "string", default: "512" },
    profile: { type: "string" },
  },
});
const rounds = Number(flags.rounds);
const warmup = Number(flags.warmup);
const batch = Number(flags.batch);

const body = Buffer.from(batchBody("bench", 0, batch, (n) => `acct-${n % 1000}`));

/** One body as the route reads it, and the bytes BullMQ would write for its jobs. */
async function receiveBody(): Promise<number> {
  const read = await readCallbackItems(body, { maxItems: 4096 }, { billingAccountFrom: DEFAULT_BILLING_ACCOUNT_FROM }, () => false);
  if (typeof read === "symbol" || !read.ok) throw new Error("the bench body was refused");
  if (read.events.length !== batch) throw new Error(`${batch - read.events.length} items were rejected: ${JSON.stringify(read.answers[0])}`);
  let written = 0;
  for (const job of callbackJobs(read)) written += JSON.stringify(job.data).length;
  return written;
}

for (let round = 0; round < warmup; round++) await receiveBody();
const session = new Session();
if (flags.profile) {
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
}
const samples: number[] = [];
let written = 0;
for (let round = 0; round < rounds; round++) {
  const before = process.cpuUsage();
  written = await receiveBody();
  const used = process.cpuUsage(before);
  samples.push((used.user + used.system) / batch);
}
if (flags.profile) {
  const { profile } = await session.post("Profiler.stop");
  writeFileSync(flags.profile, JSON.stringify(profile));
  session.disconnect();
}
samples.sort((a, b) => a - b);
const mean = samples.reduce((sum, sample) => sum + sample, 0) / samples.length;
const at = (quantile: number) => samples[Math.min(samples.length - 1, Math.floor(quantile * samples.length))]!.toFixed(1);
console.log(
  `receiver items: ${batch} events a body of ${body.length} bytes (${Math.round(body.length / batch)} a item), ${rounds} rounds after ${warmup}; job data ${Math.round(written / batch)} bytes an event`,
);
console.log(`CPU µs per event: mean ${mean.toFixed(1)}, p10 ${at(0.1)}, median ${at(0.5)}, p90 ${at(0.9)}`);
