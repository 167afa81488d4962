import type pg from "pg";
import type { QuarantineReason } from "../books/quarantine-reasons.js";
import type { BillingAccountSource } from "../platform/config.js";
import { normaliseCallbackItem } from "../litellm/normalise.js";
import { add, type Decimal, decimalFromNumber, toDecimalString, ZERO } from "../pricing/decimal.js";
import type { PriceBook } from "../pricing/price-book.js";
import { normalisedReportedCost, priceUsageEvent } from "../pricing/price-usage-event.js";
import type { RejectedItem, UsageEvent } from "../usage/usage-event.js";
import { notKept, sanitiseCallbackItem } from "../litellm/sanitise.js";
import { MAX_FIELD_BYTES, PAGE_BYTES, PAGE_STORED_BYTES, readSpendLogPage, type SpendLogCursor, type SpendLogRow } from "../litellm/spend-log-page.js";
import { canonicalRequestId, type GatewaySchema, hasKeyMetadata, readGatewaySchema, spendLogRowsExist } from "../litellm/spend-log.js";

const ROWS_PER_PAGE = 1_000;
/** Held, not billed: a field billing reads whole is over MAX_FIELD_BYTES (see litellm/spend-log-page.ts). */
const FIELD_TOO_LARGE: QuarantineReason = "spend_log_field_too_large";

export type GatewayCounts = {
  /** Successful calls that were not cache hits: what LiteLLM says was served and costs money. */
  litellmCalls: number;
  billed: number;
  /** Already waiting in quarantine (no account, unpriced): known, not lost. */
  quarantined: number;
  missing: number;
  missingSpendUsd: Decimal;
  missingCredits: bigint;
  /** Missing calls the price book cannot price (they would be quarantined). */
  missingUnpriced: number;
  /** Failures and cache hits: they cost nothing. */
  skipped: number;
};

export type GatewayReport = {
  since: Date;
  until: Date;
  days: Map<string, GatewayCounts>;
  total: GatewayCounts;
  /** Receipts in the window (by call time) with no LiteLLM row. */
  receiptsWithoutRow: number;
  /** The calls sent to be billed, when applying. */
  applied: number;
};

/** A call the backfill holds rather than bills, kept in quarantine for its reason. */
type HeldCall = RejectedItem & { reason: QuarantineReason };

export type MissingCalls = { events: UsageEvent[]; rejected: HeldCall[] };

export type GatewayReconcileOptions = {
  spendLog: pg.Pool;
  pool: pg.Pool;
  priceBook: PriceBook;
  billingAccountFrom: readonly BillingAccountSource[];
  since: Date;
  until: Date;
  /** Sends each page's missing calls through the normal queue, as their callbacks would have. */
  apply?: (calls: MissingCalls) => Promise<unknown>;
  /** Also count receipts LiteLLM has no row for (a scan of the window's receipts: reports only). */
  countReceiptsWithoutRow?: boolean;
  onProgress?: (total: GatewayCounts) => void;
};

/**
 * Compares LiteLLM's spend log with the ledger over a window, a page at a time: calls LiteLLM
 * served that were never billed (and what they cost), and receipts LiteLLM has no row for.
 */
export async function reconcileGateway(options: GatewayReconcileOptions): Promise<GatewayReport> {
  const { spendLog, pool, since, until } = options;
  // Read once per run: what this LiteLLM version's database has decides what each page asks for.
  const schema = await readGatewaySchema(spendLog);
  const withKeyMetadata = hasKeyMetadata(schema);
  const report: GatewayReport = { since, until, days: new Map(), total: emptyCounts(), receiptsWithoutRow: 0, applied: 0 };
  let cursor: SpendLogCursor = null;
  for (;;) {
    const rows = await readSpendLogPage(spendLog, schema, { since, until }, cursor, { rows: ROWS_PER_PAGE, bytes: PAGE_BYTES, storedBytes: PAGE_STORED_BYTES }, withKeyMetadata);
    if (rows.length === 0) break;
    const last = rows[rows.length - 1]!;
    cursor = { startKey: last.start_key, requestId: last.request_id };
    const missing = await countPage(report, rows, options, schema);
    if (options.apply && (missing.events.length > 0 || missing.rejected.length > 0)) {
      await options.apply(missing);
      report.applied += missing.events.length + missing.rejected.length;
    }
    options.onProgress?.(report.total);
  }
  if (options.countReceiptsWithoutRow !== false) report.receiptsWithoutRow = await countReceiptsWithoutRow(pool, spendLog, since, until);
  return report;
}

async function countPage(report: GatewayReport, rows: SpendLogRow[], options: GatewayReconcileOptions, schema: GatewaySchema): Promise<MissingCalls> {
  const billable = rows.filter((row) => !costsNothing(row));
  // Receipts and quarantine keep keys canonical (NFC): an id LiteLLM wrote in NFD is the same call.
  const keyOf = (row: SpendLogRow) => canonicalRequestId(row.request_id);
  const keys = billable.map(keyOf);
  const { rows: known } = await options.pool.query<{ idempotency_key: string; quarantined: boolean }>(
    `SELECT idempotency_key, false AS quarantined FROM charge_receipts WHERE idempotency_key = ANY($1::text[])
     UNION ALL
     SELECT idempotency_key, true FROM quarantine WHERE idempotency_key = ANY($1::text[]) AND replayed_at IS NULL`,
    [keys],
  );
  const billed = new Set(known.filter((row) => !row.quarantined).map((row) => row.idempotency_key));
  const quarantined = new Set(known.filter((row) => row.quarantined).map((row) => row.idempotency_key));
  const missing: MissingCalls = { events: [], rejected: [] };
  for (const row of rows) {
    const day = row.startTime.toISOString().slice(0, 10);
    const counts = report.days.get(day) ?? emptyCounts();
    report.days.set(day, counts);
    const tally = (update: (counts: GatewayCounts) => void) => [counts, report.total].forEach(update);
    if (costsNothing(row)) {
      tally((c) => (c.skipped += 1));
      continue;
    }
    tally((c) => (c.litellmCalls += 1));
    if (billed.has(keyOf(row))) {
      tally((c) => (c.billed += 1));
      continue;
    }
    if (quarantined.has(keyOf(row))) {
      tally((c) => (c.quarantined += 1));
      continue;
    }
    const spend = row.spend === null || !Number.isFinite(row.spend) ? ZERO : normalisedReportedCost(toDecimalString(decimalFromNumber(Math.max(0, row.spend))))!;
    tally((c) => {
      c.missing += 1;
      c.missingSpendUsd = add(c.missingSpendUsd, spend);
    });
    const payload = callbackPayloadOf(row);
    const oversized = Object.entries(row.oversized);
    if (oversized.length > 0) {
      // Billed without the field, the call could be billed wrong; held, the run goes on past it.
      missing.rejected.push(heldTooLarge(row, payload, oversized));
      tally((c) => (c.missingUnpriced += 1));
      continue;
    }
    if (keyMetadataLost(row, options.billingAccountFrom)) {
      // The key's account cannot be known any more (key deleted or regenerated): billing the next
      // source's account would charge someone the callback would not have. An operator decides.
      missing.rejected.push({
        reason: "key_metadata_unavailable",
        idempotencyKey: row.request_id,
        issues: [{ path: "api_key", message: keyLostMessage(schema) }],
        item: sanitiseCallbackItem(payload),
      });
      tally((c) => (c.missingUnpriced += 1));
      continue;
    }
    const normalised = normaliseCallbackItem(payload, { billingAccountFrom: options.billingAccountFrom });
    if (!normalised.ok) {
      missing.rejected.push(normalised.rejected);
      tally((c) => (c.missingUnpriced += 1));
      continue;
    }
    // LiteLLM kept neither the request nor a tier for the call: priced at the standard tier, and the receipt says so.
    missing.events.push(row.tier_known ? normalised.event : { ...normalised.event, tierUnknown: true });
    const pricing = priceUsageEvent(normalised.event, options.priceBook);
    if (pricing.priced) tally((c) => (c.missingCredits += pricing.charge.chargedCredits));
    else tally((c) => (c.missingUnpriced += 1));
  }
  return missing;
}

/**
 * Failures are not charged and cache hits cost nothing, as for callbacks. Batch and file calls are
 * logged by LiteLLM under a key of their own (a digest of the response), not the callback's id:
 * they are left to their callbacks, or billing them here would bill them twice.
 */
function costsNothing(row: SpendLogRow): boolean {
  return row.status === "failure" || row.cache_hit === "True" || row.cache_hit === "true" || KEYED_APART.has(row.call_type ?? "");
}

const KEYED_APART = new Set(["create_batch", "acreate_batch", "retrieve_batch", "aretrieve_batch", "create_file", "acreate_file"]);

function keyLostMessage(schema: GatewaySchema): string {
  const tables = [
    schema.keys.active && "LiteLLM_VerificationToken",
    schema.keys.deleted && "LiteLLM_DeletedVerificationToken",
    schema.keys.rotated && "LiteLLM_DeprecatedVerificationToken",
  ].filter(Boolean);
  const where = tables.length === 0 ? "LiteLLM's key tables cannot be read" : `the call's key is in none of ${tables.join(", ")}`;
  return `${where}; assign the account by hand`;
}

function keyMetadataLost(row: SpendLogRow, sources: readonly BillingAccountSource[]): boolean {
  return sources[0] === "key_metadata" && Boolean(row.api_key) && !row.key_found;
}

/**
 * A row held for a field too large to read: kept with what was read, the field marked as not
 * kept, so a replay refuses it rather than bill the call without it.
 */
function heldTooLarge(row: SpendLogRow, payload: Record<string, unknown>, oversized: Array<[string, number]>): HeldCall {
  const item = sanitiseCallbackItem(payload);
  const metadata = asRecord(item.metadata);
  for (const [path, bytes] of oversized) metadata[path.replace(/^metadata\./, "")] = notKept(`${bytes} bytes in LiteLLM's database`);
  item.metadata = metadata;
  return {
    reason: FIELD_TOO_LARGE,
    idempotencyKey: canonicalRequestId(row.request_id),
    issues: oversized.map(([path, bytes]) => ({ path, message: `${bytes} bytes, over the ${MAX_FIELD_BYTES} a field billing reads may be` })),
    item,
  };
}

/**
 * The callback LiteLLM would have sent for a spend-log row: the same fields, from the row's
 * columns and its metadata (usage detail, the rates used, who called), so the call is read,
 * priced and keyed exactly as its callback would have been.
 */
export function callbackPayloadOf(row: SpendLogRow): Record<string, unknown> {
  const metadata: Record<string, unknown> = { ...row.metadata };
  metadata.user_api_key_team_id ??= row.team_id || null;
  metadata.user_api_key_user_id ??= row.user || null;
  metadata.user_api_key_org_id ??= row.organization_id || null;
  // The spend log's api_key is the key's hash, which enforcement blocks by.
  metadata.user_api_key_hash ??= row.api_key || null;
  const keyMetadata = asRecord(row.key_metadata);
  if (Object.keys(keyMetadata).length > 0) metadata.user_api_key_auth_metadata ??= keyMetadata;
  return {
    id: row.request_id,
    call_type: row.call_type,
    status: row.status === "failure" ? "failure" : "success",
    cache_hit: false,
    model: row.model,
    model_group: row.model_group,
    custom_llm_provider: row.custom_llm_provider,
    prompt_tokens: row.prompt_tokens ?? 0,
    completion_tokens: row.completion_tokens ?? 0,
    response_cost: row.spend,
    startTime: row.startTime.getTime() / 1000,
    endTime: row.endTime === null ? null : row.endTime.getTime() / 1000,
    end_user: row.end_user,
    metadata,
    model_map_information: metadata.model_map_information ?? null,
    model_parameters: {
      service_tier: row.service_tier,
      web_search_options: { search_context_size: row.search_context_size },
    },
  };
}

async function countReceiptsWithoutRow(pool: pg.Pool, spendLog: pg.Pool, since: Date, until: Date): Promise<number> {
  let withoutRow = 0;
  let afterId = "0";
  for (;;) {
    const { rows } = await pool.query<{ id: string; idempotency_key: string }>(
      `SELECT id, idempotency_key FROM charge_receipts
       WHERE event_time >= $1 AND event_time < $2 AND pricing_source <> 'cache_hit' AND id > $3
       ORDER BY id LIMIT $4`,
      [since, until, afterId, ROWS_PER_PAGE],
    );
    if (rows.length === 0) return withoutRow;
    afterId = rows[rows.length - 1]!.id;
    const present = await spendLogRowsExist(spendLog, rows.map((row) => row.idempotency_key));
    withoutRow += rows.filter((row) => !present.has(row.idempotency_key)).length;
  }
}

function emptyCounts(): GatewayCounts {
  return { litellmCalls: 0, billed: 0, quarantined: 0, missing: 0, missingSpendUsd: ZERO, missingCredits: 0n, missingUnpriced: 0, skipped: 0 };
}

function asRecord(value: unknown): Record<string, unknown> {
  if (typeof value === "string") {
    try {
      return asRecord(JSON.parse(value));
    } catch {
      return {};
    }
  }
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

export function countsJson(counts: GatewayCounts) {
  return {
    litellm_calls: counts.litellmCalls,
    billed: counts.billed,
    quarantined: counts.quarantined,
    missing: counts.missing,
    missing_spend_usd: toDecimalString(counts.missingSpendUsd),
    missing_credits: counts.missingCredits.toString(),
    missing_unpriced: counts.missingUnpriced,
    skipped: counts.skipped,
  };
}
