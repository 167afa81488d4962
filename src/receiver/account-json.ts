import { errorCodes } from "fastify";
import { InvalidRequestError } from "./errors.js";

const UTF8 = new TextDecoder("utf-8", { fatal: true });
const JSON_NUMBER = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/**
 * An account API body, parsed so that what is stored is what was sent. JSON.parse reads bytes that
 * are not UTF-8 as U+FFFD (another reference than the one sent) and a number as the nearest double
 * (4503599627370496.5 credits as 4503599627370496): both are refused, 400 naming the field, where
 * Fastify's own parser would let them through altered. Empty or malformed bodies answer as there.
 */
export function parseAccountJson(body: Buffer): unknown {
  if (body.length === 0) throw new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY();
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new InvalidRequestError([{ path: "", message: "the body is not UTF-8" }]);
  }
  const issues: Array<{ path: string; message: string }> = [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, (key, value, context?: { source?: string }) => {
      // Refused as Fastify's own parser refuses it: an object's prototype is no request field.
      if (key === "__proto__") issues.push({ path: key, message: "is not a field of any request" });
      if (typeof value === "number" && context?.source !== undefined && !readsExactly(context.source, value)) {
        issues.push({ path: key, message: `${context.source} is not a whole number JSON can carry exactly (it reads as ${value})` });
      }
      return value;
    });
  } catch {
    throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY();
  }
  if (issues.length > 0) throw new InvalidRequestError(issues);
  return parsed;
}

/**
 * Whether JSON number text is exactly the integer it was read as. A fraction or an infinity is
 * left to the route's schema, which refuses it by its own rule; only an integer that a rounding
 * made (a fraction past 2^52, a tiny exponent, a whole number past 2^53) is not what was sent.
 */
function readsExactly(source: string, value: number): boolean {
  if (!Number.isInteger(value)) return true;
  const [, whole = "", fraction = "", exponent = "0"] = JSON_NUMBER.exec(source) ?? [];
  const digits = (whole + fraction).replace(/^0+/, "");
  if (digits === "") return value === 0;
  const scale = Number(exponent) - fraction.length;
  // digits × 10^scale is whole only when its last −scale digits are zeros.
  const zeros = digits.length - digits.replace(/0+$/, "").length;
  if (scale < 0 && zeros < -scale) return false;
  // A finite double has at most 309 integer digits, so 10^scale stays small here.
  const exact = scale < 0 ? BigInt(digits.slice(0, digits.length + scale)) : BigInt(digits) * 10n ** BigInt(scale);
  return exact === (value < 0 ? -BigInt(value) : BigInt(value));
}
