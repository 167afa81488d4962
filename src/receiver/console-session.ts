import { createHash, randomBytes } from "node:crypto";
import type { RedisClient } from "../platform/deps.js";

/** How long a session lasts from sign-in, whatever is done with it. */
export const SESSION_SECONDS = 8 * 3600;
/** Failed sign-ins one address may make per window before it is refused until the window ends. */
export const SIGN_IN_FAILURES_ALLOWED = 10;
export const SIGN_IN_WINDOW_SECONDS = 15 * 60;

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/**
 * Console sessions in Redis, where every receiver finds them. Only a hash of the session id is
 * stored, so what Redis holds cannot be replayed as a cookie; signing out deletes it, so a
 * cookie copied before then opens nothing after. Each session names (by hash) the CONSOLE_TOKEN
 * it was opened with: a new token closes every session opened with the old one.
 */
export function createConsoleSessions(redis: RedisClient, keyPrefix: string, consoleToken: string) {
  const sessionKey = (sessionId: string) => `${keyPrefix}:console:session:${sha256(sessionId)}`;
  const tokenDigest = sha256(`console-token:${consoleToken}`);

  return {
    /** A new session's id, for the cookie; nothing that could rebuild it is kept. */
    async open(): Promise<string> {
      const sessionId = randomBytes(32).toString("base64url");
      await redis.set(sessionKey(sessionId), tokenDigest, "EX", SESSION_SECONDS);
      return sessionId;
    },

    async isOpen(sessionId: string | undefined): Promise<boolean> {
      // 43 characters: 32 random bytes in base64url. Anything else is not one of ours.
      if (sessionId === undefined || !/^[A-Za-z0-9_-]{43}$/.test(sessionId)) return false;
      return (await redis.get(sessionKey(sessionId))) === tokenDigest;
    },

    async close(sessionId: string | undefined): Promise<void> {
      if (sessionId !== undefined) await redis.del(sessionKey(sessionId));
    },

    /** Counts a failed sign-in from `address`. Its window starts at the first failure; later ones do not extend it. */
    async failedSignIn(address: string): Promise<void> {
      const key = `${keyPrefix}:console:sign-in-failures:${sha256(address)}`;
      await redis.multi().incr(key).expire(key, SIGN_IN_WINDOW_SECONDS, "NX").exec();
    },

    /** Whether `address` has used up its failures for the window. */
    async signInRefused(address: string): Promise<boolean> {
      const failures = Number((await redis.get(`${keyPrefix}:console:sign-in-failures:${sha256(address)}`)) ?? 0);
      return failures >= SIGN_IN_FAILURES_ALLOWED;
    },
  };
}

export type ConsoleSessions = ReturnType<typeof createConsoleSessions>;
