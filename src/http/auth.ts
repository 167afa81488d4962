import { createHash, timingSafeEqual } from "node:crypto";

const digest = (value: string) => createHash("sha256").update(value).digest();

/**
 * True when the `Authorization: Bearer` token equals one of `tokens`. Every token is compared,
 * over fixed-length digests, so the time taken says nothing about which or how much matched.
 */
export function bearerTokenMatches(authorization: string | undefined, tokens: readonly string[]): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
  const presented = digest(match?.[1] ?? "");
  let matched = false;
  for (const token of tokens) matched = timingSafeEqual(presented, digest(token)) || matched;
  return match !== null && matched;
}

/** Basic auth for `admin:<password>`, compared the same way. */
export function basicAuthMatches(authorization: string | undefined, password: string): boolean {
  const match = /^Basic\s+(\S+)\s*$/i.exec(authorization ?? "");
  const presented = digest(Buffer.from(match?.[1] ?? "", "base64").toString("utf8"));
  return timingSafeEqual(presented, digest(`admin:${password}`)) && match !== null;
}
