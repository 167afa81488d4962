import { randomUUID } from "node:crypto";
import type { Queue } from "bullmq";
import type pg from "pg";
import { withTransaction } from "../db/client.js";
import { listQuarantined, markReplayed } from "../ledger/quarantine.js";
import { type UsageEvent, usageEventSchema } from "../queue/contract.js";
import { enqueueCallbackItems } from "../queue/producer.js";
import { normaliseCallbackItem, type ReadOptions } from "./litellm-payload.js";

const ROWS_PER_PAGE = 500;
// The first receipt stands: sending the other usage again could only be refused again.
const NEVER_REPLAYED = ["receipt_conflict"];

export type ReplayProgress = { replayed: number; stillRefused: number };

/**
 * Sends quarantined items back through the pipeline after a fix (a price book entry, an
 * account mapping, a schema correction). Receiver rejects are validated again as callback
 * items; worker rejects go back as the usage events they were. Each is charged at most once,
 * because the receipt's idempotency key decides, not the replay.
 */
export async function replayQuarantined(
  pool: pg.Pool,
  queue: Queue,
  options: ReadOptions & { reason?: string; onProgress?: (progress: ReplayProgress) => void },
): Promise<ReplayProgress> {
  const runId = randomUUID();
  const progress: ReplayProgress = { replayed: 0, stillRefused: 0 };
  let afterId: string | undefined;
  for (;;) {
    const rows = await listQuarantined(pool, {
      reason: options.reason,
      afterId,
      limit: ROWS_PER_PAGE,
      excludeReasons: NEVER_REPLAYED,
    });
    if (rows.length === 0) break;
    afterId = rows[rows.length - 1]!.id;
    const events: UsageEvent[] = [];
    const replayedIds: string[] = [];
    for (const row of rows) {
      const event = usageEventFrom(row.stage, row.item, options);
      if (event === null) {
        progress.stillRefused += 1;
        continue;
      }
      events.push(event);
      replayedIds.push(row.id);
    }
    // Marked inside a transaction that stays open until the jobs are queued: a worker that
    // refuses an event again waits on the row's lock and then opens the row again, and a
    // crash before commit leaves the rows pending (a second replay charges nothing twice).
    await withTransaction(pool, async (client) => {
      await markReplayed(client, replayedIds);
      await enqueueCallbackItems(queue, { events, rejected: [] }, { runId });
    });
    progress.replayed += replayedIds.length;
    options.onProgress?.({ ...progress });
  }
  return progress;
}

function usageEventFrom(stage: "receiver" | "worker", item: unknown, options: ReadOptions): UsageEvent | null {
  if (stage === "worker") {
    const parsed = usageEventSchema.safeParse(item);
    return parsed.success ? parsed.data : null;
  }
  const normalised = normaliseCallbackItem(item, options);
  return normalised.ok ? normalised.event : null;
}
