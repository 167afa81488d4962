import { z } from "zod";
import { rejectedItemSchema } from "../usage/usage-event.js";

/** The one queue between the receiver and the usage workers. */
export const USAGE_QUEUE = "usage-events";

export const JOB_CHARGE_USAGE = "charge-usage";
export const JOB_QUARANTINE_ITEMS = "quarantine-items";
export const USAGE_JOB_NAMES = [JOB_CHARGE_USAGE, JOB_QUARANTINE_ITEMS] as const;

/** Events per job: a job is charged in one transaction, so this is the ledger's batch size. */
export const EVENTS_PER_JOB = 512;

/** Events are checked one by one (`parseUsageEvents`), so one unreadable event costs only itself. */
export const chargeUsageJobSchema = z.object({ events: z.array(z.unknown()).min(1) });

export const quarantineItemsJobSchema = z.object({ items: z.array(rejectedItemSchema).min(1) });
