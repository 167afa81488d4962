import { createHash } from "node:crypto";
import { parsePythonJson } from "./python-json.js";

/**
 * LiteLLM's generic_api callback sends one of three log formats, and sends ndjson with
 * `Content-Type: application/json`, so the body's shape decides which one it is.
 */
export type ParsedCallbackBody = { ok: true; items: unknown[] } | { ok: false; code: string; message: string };

export function parseCallbackBody(text: string): ParsedCallbackBody {
  const body = text.trim();
  if (body === "") return { ok: false, code: "empty_batch", message: "the body is empty" };
  const whole = parseJson(body);
  if (whole.ok) {
    if (typeof whole.value !== "object" || whole.value === null) {
      return { ok: false, code: "invalid_body", message: "the body must be a JSON array or object" };
    }
    const items = Array.isArray(whole.value) ? whole.value : [whole.value];
    if (items.length === 0) return { ok: false, code: "empty_batch", message: "the batch has no items" };
    return { ok: true, items };
  }
  const lines = body.split("\n").filter((line) => line.trim() !== "");
  if (lines.length > 1) {
    const items = lines.map((line) => parseJson(line));
    if (items.some((item) => item.ok)) {
      // An unparseable line costs only itself: it is rejected by index like any bad item.
      return { ok: true, items: items.map((item, index) => (item.ok ? item.value : new UnparseableLine(lines[index]!))) };
    }
  }
  return { ok: false, code: "invalid_json", message: "the body is not JSON, a JSON array or newline-delimited JSON" };
}

/**
 * Stands in for an ndjson line that is not JSON, so the item is rejected with a clear reason.
 * Only its digest and size are kept: the line may hold prompt text.
 */
export class UnparseableLine {
  readonly sha256: string;
  readonly bytes: number;
  constructor(line: string) {
    this.sha256 = createHash("sha256").update(line).digest("hex");
    this.bytes = Buffer.byteLength(line);
  }
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: parsePythonJson(text) };
  } catch {
    return { ok: false };
  }
}
