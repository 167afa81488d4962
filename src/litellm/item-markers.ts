import { createHash } from "node:crypto";

/**
 * Stands in for an item (an ndjson line, an element of the array) that is not JSON, so it is
 * refused with a clear reason and costs only itself. Only its digest and size are kept: it may
 * hold prompt text.
 */
export class UnparseableItem {
  readonly sha256: string;
  readonly bytes: number;
  constructor(text: Uint8Array) {
    this.sha256 = createHash("sha256").update(text).digest("hex");
    this.bytes = text.length;
  }
}

/**
 * Stands in for an item over the per-item bounds, which is never parsed whole: it is refused on
 * its own (`item_too_large`) while the rest of its batch is read. `billingFields` are the fields
 * billing reads that could be read cheaply from its bytes (the key among them), so its quarantine
 * row shows which call it was.
 */
export class OversizedItem {
  constructor(
    readonly why: string,
    readonly bytes: number,
    readonly billingFields: Record<string, unknown>,
  ) {}
}
