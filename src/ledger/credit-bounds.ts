/**
 * The largest credit amount the books hold: balances, grants and single charges stay within
 * ±(2^53 − 1), so every one of them is exact as a JSON number. A grant that would cross it is
 * refused and a charge that would cross it is quarantined; nothing is ever rounded.
 */
export const MAX_CREDITS = BigInt(Number.MAX_SAFE_INTEGER);

export function creditsWithinBound(credits: bigint): boolean {
  return credits >= -MAX_CREDITS && credits <= MAX_CREDITS;
}
