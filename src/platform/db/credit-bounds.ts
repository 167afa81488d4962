/**
 * The largest credit amount the books hold: balances, grants and single charges stay within
 * ±(2^53 − 1), so every one of them is exact as a JSON number. A grant that would cross it is
 * refused and a charge that would cross it is quarantined; nothing is ever rounded. (Books
 * written before the bound may hold more; they are read exactly and may only move toward zero.)
 */
export const MAX_CREDITS = BigInt(Number.MAX_SAFE_INTEGER);

