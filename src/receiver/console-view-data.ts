const JSON_SHOWN = 4000;
// Bidi embeddings, overrides and isolates, zero-width characters and the BOM.
const INVISIBLE = /[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;

/** What the console's templates format values with (as `it.fmt`), and the shapes its charts take. */
export const consoleFormat = {
  /** Credits with thousands separators: exact, whatever their size. */
  credits(value: bigint | number): string {
    return value.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  },
  /** A time in UTC, to the second. */
  time(value: Date | null | undefined): string {
    return value ? `${value.toISOString().slice(0, 19).replace("T", " ")} UTC` : "—";
  },
  /**
   * A quarantined item or its detail as indented JSON, at most JSON_SHOWN characters, with the
   * characters that hide or reorder text (bidi controls, zero-width, BOM) written as \u escapes.
   */
  json(value: unknown): string {
    const text = (JSON.stringify(value, null, 2) ?? "null").replace(INVISIBLE, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
    return text.length > JSON_SHOWN ? `${text.slice(0, JSON_SHOWN)}… (${text.length - JSON_SHOWN} more characters)` : text;
  },
  /** A duration in seconds, roughly: 42 s, 3 min, 5 h, 2 d. */
  duration(seconds: number): string {
    if (seconds < 120) return `${Math.round(seconds)} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
    return `${Math.round(seconds / 86_400)} d`;
  },
};

/** A chart as console.js draws it: x in Unix seconds, one series per label. */
export type ChartData = { kind: "line" | "bars" | "stacked"; x: number[]; series: Array<{ label: string; values: number[] }>; negative?: boolean };

/** The models charged most are drawn each as its own layer; the rest as one. */
const MODELS_DRAWN = 8;

/** Credits per day stacked by model over `days` days from `from`, every day present (0 where nothing was charged). */
export function stackedByModel(rows: Array<{ day: Date; model: string; credits: bigint }>, from: Date, days: number): ChartData {
  const x = Array.from({ length: days }, (_, index) => from.getTime() / 1000 + index * 86_400);
  const totals = new Map<string, bigint>();
  for (const row of rows) totals.set(row.model, (totals.get(row.model) ?? 0n) + row.credits);
  const ranked = [...totals.entries()].sort((a, b) => (a[1] < b[1] ? 1 : a[1] > b[1] ? -1 : a[0] < b[0] ? -1 : 1)).map(([model]) => model);
  const drawn = new Set(ranked.slice(0, MODELS_DRAWN));
  const labelOf = (model: string) => (drawn.has(model) ? model || "(no model)" : "other models");
  const labels = [...ranked.slice(0, MODELS_DRAWN).map(labelOf), ...(ranked.length > MODELS_DRAWN ? ["other models"] : [])];
  const values = new Map(labels.map((label) => [label, new Array<number>(days).fill(0)]));
  for (const row of rows) {
    const index = Math.round((row.day.getTime() - from.getTime()) / 86_400_000);
    if (index >= 0 && index < days) values.get(labelOf(row.model))![index]! += Number(row.credits);
  }
  return { kind: "stacked", x, series: labels.map((label) => ({ label, values: values.get(label)! })) };
}
