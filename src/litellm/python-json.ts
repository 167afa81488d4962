/**
 * LiteLLM serialises with Python's json.dumps defaults, which write a float that went bad as
 * the bare literals NaN, Infinity and -Infinity. JSON.parse refuses the whole body for one
 * of them; this parser turns each into a string of the same name instead, so the schema
 * rejects only the field (and so the item) that carried it.
 */
export const NON_FINITE_LITERALS = new Set(["NaN", "Infinity", "-Infinity"]);

export function parsePythonJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const quoted = quoteNonFiniteLiterals(text);
    if (quoted === text) throw error;
    return JSON.parse(quoted);
  }
}

/**
 * Quotes NaN, Infinity and -Infinity where they stand as values, leaving strings untouched. The
 * pieces are joined once: appending one by one would build a rope of a node per literal.
 */
function quoteNonFiniteLiterals(text: string): string {
  const pieces: string[] = [];
  let copiedUpTo = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const char = text[index];
    if (inString) {
      if (char === "\\") index++;
      else if (char === '"') inString = false;
      continue;
    }
    if (char === '"') {
      inString = true;
      continue;
    }
    for (const literal of NON_FINITE_LITERALS) {
      if (text.startsWith(literal, index) && !isWordChar(text[index - 1]) && !isWordChar(text[index + literal.length])) {
        pieces.push(text.slice(copiedUpTo, index), `"${literal}"`);
        index += literal.length - 1;
        copiedUpTo = index + 1;
        break;
      }
    }
  }
  if (copiedUpTo === 0) return text;
  pieces.push(text.slice(copiedUpTo));
  return pieces.join("");
}

function isWordChar(char: string | undefined): boolean {
  return char !== undefined && /[\w.+-]/.test(char);
}
