import { createHash, timingSafeEqual } from "node:crypto";

const digest = (value: string) => createHash("sha256").update(value).digest();

/** The token of `Authorization: Bearer` credentials, else null. */
export function bearerToken(authorization: string | undefined): string | null {
  return /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "")?.[1] ?? null;
}

/**
 * True when the `Authorization: Bearer` token equals one of `tokens`. Every token is compared,
 * over fixed-length digests, so the time taken says nothing about which or how much matched.
 */
export function bearerTokenMatches(authorization: string | undefined, tokens: readonly string[]): boolean {
  const token = bearerToken(authorization);
  const presented = digest(token ?? "");
  let matched = false;
  for (const candidate of tokens) matched = timingSafeEqual(presented, digest(candidate)) || matched;
  return token !== null && matched;
}

/** Whether `presented` is `secret`, compared over fixed-length digests as above. */
export function sameSecret(presented: string, secret: string): boolean {
  return timingSafeEqual(digest(presented), digest(secret));
}

/**
 * The username of `Authorization: Basic` credentials whose password is `password`, else
 * undefined. Any non-empty username is taken: it names the operator in the audit log and proves
 * nothing. The password is compared over fixed-length digests, as above.
 */
export function basicAuthUsername(authorization: string | undefined, password: string): string | undefined {
  const match = /^Basic\s+(\S+)\s*$/i.exec(authorization ?? "");
  const credentials = Buffer.from(match?.[1] ?? "", "base64").toString("utf8");
  const separator = credentials.indexOf(":");
  const matched = sameSecret(separator < 0 ? "" : credentials.slice(separator + 1), password);
  return matched && separator > 0 ? credentials.slice(0, separator) : undefined;
}
