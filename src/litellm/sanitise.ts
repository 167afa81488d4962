import { createHash } from "node:crypto";
import { z } from "zod";
import { SEARCH_CONTEXT_SIZES } from "../usage/rate-fields.js";
import { OversizedItem, UnparseableItem } from "./item-markers.js";
import { billingFieldReads, type FieldReadRule, isRecord, litellmPayloadSchema, unwrapped } from "./payload-schema.js";
import { costFigureOf, labelOf, OTHER_UNIT_RATE, RATE_FIELD_SET, searchContextSizeOf } from "./token-detail.js";

/**
 * The fields billing reads and nothing else, so a quarantined item can be inspected and
 * replayed without keeping prompt or response text. Each is kept exactly as sent, or replaced
 * by a `{"not_kept": why}` marker where jsonb cannot hold it exactly (NUL, a lone surrogate, a
 * number past a double) or it is too big to keep: replay refuses a copy with a marker
 * (`firstNotKept`) rather than read a stand-in as the value. A value billing skips unless it
 * is an object (a usage object, `response`, a rate billing would not use) is left out when it
 * is not one, which billing reads the same way.
 */
export function sanitiseCallbackItem(item: unknown): Record<string, unknown> {
  if (item instanceof UnparseableItem) return { not_json: { sha256: item.sha256, bytes: item.bytes } };
  // First, so replay names it: the item was never read whole, so what it kept is not all it held.
  if (item instanceof OversizedItem) return { ...notKept(`${item.why} (${item.bytes} bytes); only the fields billing reads were kept`), ...keptObject(item.billingFields, CALLBACK_ITEM_SHAPE.fields) };
  if (!isRecord(item)) {
    // Distinct refused items stay distinct rows; their content is not kept, only its digest.
    const text = serialised(item);
    return { not_an_object: { type: Array.isArray(item) ? "array" : typeof item, sha256: sha256(text), bytes: Buffer.byteLength(text) } };
  }
  return keptObject(item, CALLBACK_ITEM_SHAPE.fields);
}

/**
 * How the copy keeps a field: `exact` (the value, or a marker), an object of fields (a value
 * that is not an object is kept exactly, since billing refuses it, or left out where billing
 * skips it), or a function for fields read by a rule of their own (undefined: left out).
 */
type FieldShape = "exact" | ObjectShape | ((value: unknown) => unknown);
export type ObjectShape = { fields: Record<string, FieldShape>; skippedUnlessObject?: true };

// Fields read by a rule of their own keep what that rule reads (undefined: left out).
const COPY_BY_RULE: Record<FieldReadRule, (value: unknown) => unknown> = {
  rates: keptRates,
  label: (label) => (labelOf(label) === null ? undefined : exactValue(label)),
  searchContextSize: (size) => searchContextSizeOf(size) ?? undefined,
  cost: (figure) => costFigureOf(figure) ?? undefined,
};

/** The copy's shape, read off the schema that declares what billing reads. */
function shapeOf(schema: z.ZodType): FieldShape {
  const read = billingFieldReads.get(schema);
  if (read !== undefined && "readBy" in read) return COPY_BY_RULE[read.readBy];
  if (read !== undefined) return { ...objectShapeOf(read.skippedUnlessObject), skippedUnlessObject: true };
  const inner = unwrapped(schema);
  if (inner !== schema) return shapeOf(inner);
  return inner instanceof z.ZodObject ? objectShapeOf(inner) : "exact";
}

function objectShapeOf(schema: z.ZodObject): ObjectShape {
  return { fields: Object.fromEntries(Object.entries(schema.shape).map(([field, fieldSchema]) => [field, shapeOf(fieldSchema)])) };
}

export const CALLBACK_ITEM_SHAPE = objectShapeOf(litellmPayloadSchema);

function keptField(value: unknown, shape: FieldShape): unknown {
  if (shape === "exact") return exactValue(value);
  if (typeof shape === "function") return shape(value);
  if (isRecord(value)) return keptObject(value, shape.fields);
  return shape.skippedUnlessObject ? undefined : exactValue(value);
}

function keptObject(source: Record<string, unknown>, fields: Record<string, FieldShape>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [field, shape] of Object.entries(fields)) {
    if (!Object.hasOwn(source, field)) continue;
    const copy = keptField(source[field], shape);
    if (copy !== undefined) kept[field] = copy;
  }
  return kept;
}

/**
 * The rates of model_map_value as gatewayRateDetail reads them: rate fields that are finite
 * numbers, and one rate for another unit above zero (all billing reads of those is that one exists).
 */
function keptRates(value: unknown): unknown {
  if (!isRecord(value)) return undefined;
  const kept: Record<string, unknown> = {};
  let otherUnitKept = false;
  for (const [field, rate] of Object.entries(value)) {
    if (RATE_FIELD_SET.has(field)) {
      if (typeof rate === "number" && Number.isFinite(rate)) kept[field] = rate;
    } else if (!otherUnitKept && typeof rate === "number" && rate > 0 && OTHER_UNIT_RATE.test(field)) {
      if (!Number.isFinite(rate) || textNotKept(field) !== null) return notKept("a rate for another unit whose name or value jsonb cannot hold");
      kept[field] = rate;
      otherUnitKept = true;
    }
  }
  const search = value.search_context_cost_per_query;
  if (isRecord(search)) {
    const sizes: Record<string, unknown> = {};
    for (const size of SEARCH_CONTEXT_SIZES) {
      const rate = search[`search_context_size_${size}`];
      if (typeof rate === "number" && Number.isFinite(rate)) sizes[`search_context_size_${size}`] = rate;
    }
    kept.search_context_cost_per_query = sizes;
  }
  return kept;
}

const NOT_KEPT = "not_kept";

/** A marker in place of a value not kept exactly, saying why: a replay refuses a copy that has one. */
export function notKept(why: string): { [NOT_KEPT]: string } {
  return { [NOT_KEPT]: why };
}

/** The value itself when jsonb holds it exactly and it is small, else a marker saying why not. */
function exactValue(value: unknown): unknown {
  if (typeof value === "string") {
    const why = textNotKept(value);
    return why === null ? value : notKept(why);
  }
  // JSON.parse reads 1e400 as Infinity, which JSON and jsonb cannot write.
  if (typeof value === "number") return Number.isFinite(value) ? value : notKept("a number beyond a double");
  if (value === null || typeof value === "boolean") return value;
  return notKept(Array.isArray(value) ? "array" : typeof value);
}

const MAX_KEPT_TEXT = 1024;

/**
 * Why a text cannot be kept exactly, or null. Copies written before markers existed cut long
 * text, wrote NUL as the text `\u0000` and a lone surrogate as U+FFFD; a text holding either
 * cannot be told apart from such a copy, so it is not kept either.
 */
function textNotKept(text: string): string | null {
  if (text.length > MAX_KEPT_TEXT) return `text longer than ${MAX_KEPT_TEXT} characters`;
  if (text.includes("\u0000")) return "text holding NUL";
  if (!text.isWellFormed()) return "text holding a lone surrogate";
  if (text.includes("\\u0000") || text.includes("\uFFFD")) return "text holding \\u0000 or U+FFFD, as older copies wrote NUL and lone surrogates";
  return null;
}

/** An unusable key as its quarantine row shows it, cut to a length worth showing. */
export function keptText(value: string): string {
  // toWellFormed: the cut may split a surrogate pair.
  return value.length > MAX_KEPT_TEXT ? `${value.slice(0, MAX_KEPT_TEXT).toWellFormed()}…(${value.length} characters)` : value;
}

// What this version and older ones wrote in place of what they did not keep, and what each says.
const MARKERS: Record<string, (marker: unknown) => string> = {
  [NOT_KEPT]: (why) => String(why),
  not_a_scalar: (kind) => `${String(kind)} (an older copy kept only that)`,
  not_json: () => "the line was not JSON",
  not_an_object: () => "the item was not a JSON object",
};

/**
 * Where a kept copy (this version's or an older one's) does not hold what arrived exactly, and
 * why; null when it holds it all. Kept copies name only fields billing reads, so a marker's key
 * cannot be sent from outside.
 */
export function firstNotKept(copy: unknown, path: readonly string[] = []): { path: string; why: string } | null {
  const at = () => path.join(".") || "(the item)";
  if (typeof copy === "string") {
    const why = textNotKept(copy);
    return why === null ? null : { path: at(), why };
  }
  if (typeof copy !== "object" || copy === null) return null;
  for (const [key, value] of Object.entries(copy)) {
    if (Object.hasOwn(MARKERS, key)) return { path: at(), why: MARKERS[key]!(value) };
    const found = firstNotKept(value, [...path, key]);
    if (found !== null) return found;
  }
  return null;
}

function serialised(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // Nested past what JSON.stringify can walk; the body's size already bounds it.
    return `unserialisable ${Array.isArray(value) ? "array" : typeof value}`;
  }
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
