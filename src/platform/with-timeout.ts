/**
 * `promise`, or a rejection once `milliseconds` pass without it settling. The timer is cleared
 * as soon as either happens, so it never holds the process open; `promise` itself is not cancelled.
 */
export function withTimeout<T>(promise: Promise<T>, milliseconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${milliseconds} ms`)), milliseconds);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
