/**
 * The name receipts and reports know a model by. LiteLLM 1.81 logs a Router call's `model` with
 * its provider prefix (`openai/gpt-4o-mini`) where 1.80 logged `gpt-4o-mini`: one model must not
 * become two across a LiteLLM upgrade, so the prefix naming the call's own provider is dropped.
 * Any other prefix is part of the name (`openrouter/openai/gpt-4o` served by openrouter keeps
 * `openai/gpt-4o`).
 */
export function canonicalModel(model: string | null, provider: string | null | undefined): string | null {
  if (model === null || !provider) return model;
  const prefix = `${provider}/`;
  return model.startsWith(prefix) && model.length > prefix.length ? model.slice(prefix.length) : model;
}
