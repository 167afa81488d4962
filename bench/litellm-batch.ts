/** The batches the benches post: LiteLLM json_array bodies of realistic calls, prompts and responses included. */
import { createHash } from "node:crypto";
import { STANDARD_LOGGING_PAYLOAD } from "../test/support/litellm-payloads.js";

// A realistic call: LiteLLM's example payload with a prompt and a response of a typical size.
const example = STANDARD_LOGGING_PAYLOAD as Record<string, any>;
const template = JSON.stringify({
  ...example,
  id: "__ID__",
  endTime: "__END__",
  messages: [
    { role: "system", content: "You are a helpful assistant. ".repeat(8) },
    { role: "user", content: "Summarise the quarterly report for the board, with risks and next steps. ".repeat(12) },
  ],
  response: {
    ...example.response,
    choices: [{ ...example.response.choices[0], message: { role: "assistant", content: "The quarter closed ahead of plan. ".repeat(10) } }],
  },
  metadata: { ...example.metadata, user_api_key_team_id: "__ACCOUNT__", user_api_key_hash: "__KEY_HASH__" },
}).replace('"endTime":"__END__"', '"endTime":__END__');

export function batchBody(prefix: string, first: number, count: number, account: (n: number) => string): string {
  const end = String(Date.now() / 1000);
  const items: string[] = [];
  for (let n = first; n < first + count; n++) {
    // A key's hash as LiteLLM writes it (SHA-256 hex): enforcement records no other.
    const keyHash = createHash("sha256").update(account(n)).digest("hex");
    items.push(template.replace("__ID__", `${prefix}-${n}`).replaceAll("__ACCOUNT__", account(n)).replace("__KEY_HASH__", keyHash).replace("__END__", end));
  }
  return `[${items.join(",")}]`;
}

