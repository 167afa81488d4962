import { describe, expect, it } from "vitest";
import { sanitiseCallbackItem } from "../../src/litellm/sanitise.js";

describe("the quarantine copy", () => {
  const usage = () => ({
    prompt_tokens: 10, completion_tokens: 5, cache_read_input_tokens: 1, cache_creation_input_tokens: 2,
    prompt_tokens_details: { cached_tokens: 1, cache_creation_tokens: 2, audio_tokens: 0, web_search_requests: 1, cache_creation_token_details: { ephemeral_1h_input_tokens: 1 } },
    completion_tokens_details: { reasoning_tokens: 1, audio_tokens: 0 },
    server_tool_use: { web_search_requests: 1 },
    speed: "fast",
    inference_geo: "us",
  });
  // Written in another order than the copy's, with fields billing does not read.
  const EVERY_BILLING_FIELD = {
    response: { usage: usage(), choices: [{ message: { content: "secret" } }] },
    hidden_params: { usage_object: usage(), api_base: "x" },
    metadata: {
      user_api_key_auth_metadata: { billing_account_id: "acct-k" },
      spend_logs_metadata: { billing_account_id: "acct-s" },
      usage_object: usage(),
      user_api_key_end_user_id: "eu", user_api_key_org_id: "org", user_api_key_user_id: "user", user_api_key_team_id: "team",
      user_api_key_hash: "h",
    },
    model_parameters: { web_search_options: { search_context_size: "low" }, service_tier: "flex", temperature: 1 },
    model_map_information: { model_map_value: { search_context_cost_per_query: { search_context_size_low: 0.01 }, output_cost_per_token: 2e-6, input_cost_per_token: 1e-6 }, model_map_key: "gpt-4o" },
    end_user: "eu", endTime: 1.7e9, startTime: 1.7e9, response_cost: 0.1, completion_tokens: 5, prompt_tokens: 10,
    call_type: "completion", custom_llm_provider: "openai", model_group: "g", model: "gpt-4o", cache_hit: false, status: "success",
    id: "call-1", litellm_call_id: "lc-1", messages: [{ content: "secret" }],
    cost_breakdown: { margin_total_amount: 0.01, original_cost: 0.09, discount_amount: 0, input_cost: 0.05 },
  };

  const USAGE_PATHS = [
    "prompt_tokens", "completion_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "prompt_tokens_details",
    "prompt_tokens_details.cached_tokens", "prompt_tokens_details.cache_creation_tokens", "prompt_tokens_details.audio_tokens",
    "prompt_tokens_details.web_search_requests", "prompt_tokens_details.cache_creation_token_details",
    "prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens", "completion_tokens_details",
    "completion_tokens_details.reasoning_tokens", "completion_tokens_details.audio_tokens", "server_tool_use",
    "server_tool_use.web_search_requests", "speed", "inference_geo",
  ];
  const usagePaths = (at: string) => USAGE_PATHS.map((path) => `${at}.${path}`);

  function pathsOf(value: unknown, at: string[] = []): string[] {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return [];
    return Object.entries(value).flatMap(([key, inner]) => [[...at, key].join("."), ...pathsOf(inner, [...at, key])]);
  }

  it("keeps every field billing reads, in one order whatever order they came in, and nothing else", () => {
    // The quarantine fingerprint hashes the copy as JSON text: a changed order would keep a
    // re-sent refused item twice. This is the order copies have been written in since they had
    // markers; user_api_key_hash came later (enforcement), and so comes last in its object.
    expect(pathsOf(sanitiseCallbackItem(EVERY_BILLING_FIELD))).toEqual([
      "litellm_call_id", "id", "status", "cache_hit", "model", "model_group", "custom_llm_provider", "call_type", "prompt_tokens",
      "completion_tokens", "response_cost", "startTime", "endTime", "end_user", "model_map_information",
      "model_map_information.model_map_key", "model_map_information.model_map_value",
      "model_map_information.model_map_value.output_cost_per_token", "model_map_information.model_map_value.input_cost_per_token",
      "model_map_information.model_map_value.search_context_cost_per_query",
      "model_map_information.model_map_value.search_context_cost_per_query.search_context_size_low", "model_parameters",
      "model_parameters.service_tier", "model_parameters.web_search_options",
      "model_parameters.web_search_options.search_context_size", "metadata", "metadata.user_api_key_team_id",
      "metadata.user_api_key_user_id", "metadata.user_api_key_org_id", "metadata.user_api_key_end_user_id",
      "metadata.usage_object", ...usagePaths("metadata.usage_object"), "metadata.spend_logs_metadata",
      "metadata.spend_logs_metadata.billing_account_id", "metadata.user_api_key_auth_metadata",
      "metadata.user_api_key_auth_metadata.billing_account_id", "metadata.user_api_key_hash", "hidden_params", "hidden_params.usage_object",
    ...usagePaths("hidden_params.usage_object"), "response", "response.usage", ...usagePaths("response.usage"),
      "cost_breakdown", "cost_breakdown.original_cost", "cost_breakdown.discount_amount", "cost_breakdown.margin_total_amount",
    ]);
  });
});
