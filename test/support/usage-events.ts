import type { UsageEvent } from "../../src/queue/contract.js";

let eventCounter = 0;

/** A usage event with neutral defaults: success, no cache hit, zero tokens, no names, no cost. */
export function usageEvent(overrides: Partial<UsageEvent> = {}): UsageEvent {
  eventCounter += 1;
  return {
    idempotencyKey: `test-call-${eventCounter}`,
    billingAccountId: "acct-1",
    status: "success",
    cacheHit: false,
    model: null,
    modelGroup: null,
    modelMapKey: null,
    provider: null,
    promptTokens: 0,
    completionTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    reasoningTokens: 0,
    reportedCostUsd: null,
    eventTime: null,
    ...overrides,
  };
}
