import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { createMetrics } from "../../src/platform/metrics.js";

// dashboards/grafana/spend-ingest.json is checked against the registry createMetrics builds, as
// test/unit/reference-docs.test.ts checks docs/reference/metrics.md: a metric renamed or dropped in
// code, or misspelled in the dashboard, fails here rather than as an empty panel on the day it is needed.

type Target = { refId?: string; expr?: string; datasource?: unknown };
type Panel = { id?: number; type?: string; title?: string; gridPos?: { x: number; y: number; w: number; h: number }; targets?: Target[] };
type Variable = { name: string; type: string; query?: unknown; current?: { value?: unknown } };
type Dashboard = {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  __inputs?: Array<{ name: string; type: string; pluginId: string }>;
  templating?: { list: Variable[] };
  panels?: Panel[];
};

const dashboard = JSON.parse(readFileSync(new URL("../../dashboards/grafana/spend-ingest.json", import.meta.url), "utf8")) as Dashboard;
const queryPanels = (dashboard.panels ?? []).filter((panel) => panel.type !== "row");

/** A metric as the registry exports it: its type, its label names, and the values each label is seen with. */
type Exported = { type: string; labels: string[]; values: Map<string, Set<string>> };
let exported: Map<string, Exported>;

beforeAll(async () => {
  const { registry } = createMetrics([]);
  const metrics = await registry.getMetricsAsJSON();
  exported = new Map(
    metrics.map((metric) => {
      const values = new Map<string, Set<string>>();
      for (const { labels } of metric.values) {
        for (const [label, value] of Object.entries(labels)) values.set(label, (values.get(label) ?? new Set()).add(String(value)));
      }
      // prom-client keeps each metric's label names on it, though its types do not say so.
      const labels = (registry.getSingleMetric(metric.name) as { labelNames?: readonly string[] } | undefined)?.labelNames ?? [];
      return [metric.name, { type: String(metric.type), labels: [...labels], values }];
    }),
  );
});

type Matcher = { label: string; op: string; value: string };
/** One series selector of an expression, with the functions it sits in, outermost first. */
type Selector = { name: string; matchers: Matcher[]; within: string[] };

const AGGREGATIONS = new Set(["sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"]);
/** Followed by a list of label names in parentheses, not by an expression. */
const LABEL_LISTS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "atan2", "group_left", "group_right"]);
const RANGE_FUNCTIONS = new Set(["rate", "irate", "increase"]);

/** The index just past the bracket that closes the one at `start`, quoted strings skipped. */
function pastClosing(expr: string, start: number): number {
  const close = { "(": ")", "[": "]", "{": "}" }[expr[start]!]!;
  for (let index = start + 1; index < expr.length; index += 1) {
    if (expr[index] === '"') index = expr.indexOf('"', index + 1) >>> 0;
    else if (expr[index] === close) return index + 1;
  }
  throw new Error(`unclosed ${expr[start]} in ${expr}`);
}

/**
 * The series selectors of a PromQL expression: every name that is not a function, an aggregation,
 * a keyword or a label, with its label matchers. Enough PromQL for a dashboard's queries; Grafana's
 * variables may stand only in matchers and ranges, where they are no names.
 */
function selectors(expr: string): Selector[] {
  const found: Selector[] = [];
  const stack: string[] = [];
  let pending = "";
  let afterName = false;
  let index = 0;
  while (index < expr.length) {
    const rest = expr.slice(index);
    const name = /^[a-zA-Z_:][\w:]*/.exec(rest)?.[0];
    const wasAfterName: boolean = afterName;
    afterName = false;
    if (/^\s/.test(rest)) {
      afterName = wasAfterName;
      index += 1;
    } else if (name !== undefined) {
      index += name.length;
      const opens = /^\s*\(/.test(expr.slice(index));
      if (LABEL_LISTS.has(name) && opens) index = pastClosing(expr, expr.indexOf("(", index));
      else if (AGGREGATIONS.has(name) || opens) pending = name;
      else if (!KEYWORDS.has(name)) {
        found.push({ name, matchers: [], within: [...stack] });
        afterName = true;
      }
    } else if (/^\d/.test(rest)) {
      index += /^\d[\w.]*/.exec(rest)![0].length;
    } else if (rest[0] === "{") {
      const end = pastClosing(expr, index);
      const matchers = [...expr.slice(index + 1, end - 1).matchAll(/([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)].map(([, label, op, value]) => ({ label: label!, op: op!, value: value! }));
      if (!wasAfterName) throw new Error(`a selector without a metric name in ${expr}`);
      found.at(-1)!.matchers = matchers;
      index = end;
    } else if (rest[0] === "[") {
      index = pastClosing(expr, index);
    } else if (rest[0] === "(") {
      stack.push(pending);
      pending = "";
      index += 1;
    } else if (rest[0] === ")") {
      stack.pop();
      index += 1;
    } else if (rest[0] === "$") {
      throw new Error(`a Grafana variable outside a matcher or a range in ${expr}`);
    } else {
      index += 1;
    }
  }
  return found;
}

/** Which exported metric a series name is, and which of a histogram's series it reads. */
function resolve(name: string): { metric: string; type: string; series: "whole" | "bucket" | "sum" | "count" } | undefined {
  const whole = exported.get(name);
  if (whole !== undefined) return { metric: name, type: whole.type, series: "whole" };
  const part = /^(.+)_(bucket|sum|count)$/.exec(name);
  const histogram = part && exported.get(part[1]!);
  return histogram?.type === "histogram" ? { metric: part![1]!, type: "histogram", series: part![2] as "bucket" | "sum" | "count" } : undefined;
}

/** What is wrong with how an expression reads one selector: its name, its type's use, its labels. */
function misuse(selector: Selector): string[] {
  const resolved = resolve(selector.name);
  if (resolved === undefined) return [`${selector.name}: not a metric the service exports`];
  const { type, series } = resolved;
  const inRange = RANGE_FUNCTIONS.has(selector.within.at(-1) ?? "");
  const inQuantile = selector.within.includes("histogram_quantile");
  const problems: string[] = [];
  if (type === "counter" && !inRange) problems.push("a counter read without rate() or increase()");
  if (type === "gauge" && inRange) problems.push("rate() or increase() of a gauge");
  if (type === "histogram" && series === "whole") problems.push("a histogram's name, which is no series (read _bucket, _sum or _count)");
  if (type === "histogram" && series !== "whole" && !inRange) problems.push(`a histogram's _${series} read without rate() or increase()`);
  if (series === "bucket" && !inQuantile) problems.push("a histogram's _bucket outside histogram_quantile()");
  if (inQuantile && series !== "bucket") problems.push("histogram_quantile() of what is not a histogram's _bucket");
  // Prometheus adds job and instance, and keeps a metric's own job as exported_job.
  const metric = exported.get(resolved.metric)!;
  const labels = new Set(["job", "instance", ...metric.labels.map((label) => (label === "job" ? "exported_job" : label)), ...(series === "bucket" ? ["le"] : [])]);
  for (const { label, op, value } of selector.matchers) {
    if (!labels.has(label)) problems.push(`no label ${label}`);
    const known = metric.values.get(label);
    const literals = op === "=" || op === "!=" ? [value] : value.split("|");
    if (known !== undefined && !value.startsWith("$")) problems.push(...literals.filter((literal) => !known.has(literal)).map((literal) => `${label} is never "${literal}"`));
  }
  return problems.map((problem) => `${selector.name}: ${problem}`);
}

const panelSelectors = (panel: Panel) => (panel.targets ?? []).flatMap((target) => selectors(target.expr ?? ""));

const named = (name: string) => (selector: Selector) => selector.name === name;
const matching = (name: string, label: string, op: string, value: string) => (selector: Selector) =>
  selector.name === name && selector.matchers.some((matcher) => matcher.label === label && matcher.op === op && matcher.value === value);
const queueState = (state: string) => (selector: Selector) =>
  selector.name === "spend_ingest_queue_jobs" &&
  selector.matchers.some((matcher) => matcher.label === "state" && (matcher.op === "=" ? [matcher.value] : matcher.op === "=~" ? matcher.value.split("|") : []).includes(state));

/** Each subject the dashboard must show, as the series its panels read: every one is read by some panel. */
const SUBJECTS: Record<string, Record<string, (selector: Selector) => boolean>> = {
  "ingest rate": { "items received": named("spend_ingest_events_received_total"), "charge outcomes": named("spend_ingest_charge_outcomes_total") },
  refusals: {
    "items refused": named("spend_ingest_events_rejected_total"),
    "requests refused": named("spend_ingest_requests_refused_total"),
    "requests unauthorized": named("spend_ingest_requests_unauthorized_total"),
  },
  "queue depth": Object.fromEntries(["waiting", "active", "delayed", "failed"].map((state) => [state, queueState(state)])),
  "event-to-ledger latency": {
    quantiles: (selector) => selector.name === "spend_ingest_event_to_ledger_seconds_bucket" && selector.within.includes("histogram_quantile"),
  },
  divergences: { divergences: named("spend_ingest_price_divergence_total") },
  enforcement: {
    "calls done": matching("spend_ingest_enforcement_calls_total", "outcome", "=", "done"),
    "calls failed": matching("spend_ingest_enforcement_calls_total", "outcome", "!=", "done"),
    outbox: named("spend_ingest_enforcement_actions_pending"),
  },
  "backfill lag": { "watermark lag": named("spend_ingest_gateway_watermark_lag_seconds") },
  quarantine: {
    "at the door": named("spend_ingest_events_rejected_total"),
    "by the worker": matching("spend_ingest_charge_outcomes_total", "outcome", "=", "quarantined"),
  },
  "usage rollup lag": { lag: named("spend_ingest_usage_rollup_lag_seconds") },
};

describe("the PromQL reader this test uses", () => {
  it("finds the selectors, not the functions, aggregations, label lists, variables or numbers", () => {
    const found = selectors(
      'histogram_quantile(0.95, sum by (le, exported_job) (rate(a_bucket{job=~"$job", state=~"x|y"}[$__rate_interval]))) / on (instance) group_left max(b) > bool 1e3 and c',
    );
    expect(found).toEqual([
      {
        name: "a_bucket",
        matchers: [
          { label: "job", op: "=~", value: "$job" },
          { label: "state", op: "=~", value: "x|y" },
        ],
        within: ["histogram_quantile", "sum", "rate"],
      },
      { name: "b", matchers: [], within: ["max"] },
      { name: "c", matchers: [], within: [] },
    ]);
  });
});

describe("dashboards/grafana/spend-ingest.json", () => {
  it("is a dashboard Grafana imports: uid, title, schema version, panels placed on the grid, each query with a refId and an expression", () => {
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.title).toBeTruthy();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const ids = (dashboard.panels ?? []).map((panel) => panel.id);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Map<string, string>();
    for (const panel of dashboard.panels ?? []) {
      const { x, y, w, h } = panel.gridPos ?? { x: -1, y: -1, w: 0, h: 0 };
      expect([x, y, w, h].every(Number.isInteger) && x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24, `${panel.title}: gridPos`).toBe(true);
      for (let row = y; row < y + h; row += 1) {
        for (let column = x; column < x + w; column += 1) {
          expect(cells.get(`${column},${row}`), `${panel.title} overlaps`).toBeUndefined();
          cells.set(`${column},${row}`, panel.title!);
        }
      }
    }
    expect(queryPanels.length).toBeGreaterThan(0);
    for (const panel of queryPanels) {
      const refIds = (panel.targets ?? []).map((target) => target.refId);
      expect(refIds.length, `${panel.title}: targets`).toBeGreaterThan(0);
      expect(new Set(refIds).size, `${panel.title}: refIds`).toBe(refIds.length);
      expect((panel.targets ?? []).every((target) => typeof target.refId === "string" && typeof target.expr === "string" && target.expr.length > 0), panel.title).toBe(true);
    }
  });

  it("binds to the Prometheus chosen on import (DS_PROMETHEUS), through a datasource variable every query uses: no datasource uid of its own", () => {
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" })]);
    const variable = dashboard.templating?.list.find((candidate) => candidate.type === "datasource");
    expect(variable).toMatchObject({ name: "datasource", query: "prometheus", current: { value: "${DS_PROMETHEUS}" } });
    // Every datasource reference anywhere in the file: the variable, or Grafana's own for annotations.
    const references: unknown[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node !== null && typeof node === "object") {
        for (const [key, value] of Object.entries(node)) {
          if (key === "datasource") references.push(value);
          else walk(value);
        }
      }
    };
    walk(dashboard);
    expect(references.length).toBeGreaterThan(queryPanels.length);
    expect(references.filter((reference) => !(typeof reference === "object" && reference !== null && ["${datasource}", "-- Grafana --"].includes((reference as { uid?: string }).uid ?? "")))).toEqual([]);
  });

  it("reads only metrics the service exports, each as its type allows: rate() of counters and histogram series, histogram_quantile() of buckets, gauges as they are", () => {
    const problems = queryPanels.flatMap((panel) =>
      (panel.targets ?? []).flatMap((target) => {
        const found = selectors(target.expr!);
        return found.length === 0 ? [`${panel.title}: no series in ${target.expr}`] : found.flatMap((selector) => misuse(selector).map((problem) => `${panel.title}: ${problem}`));
      }),
    );
    // The variables' label_values() name a metric too.
    const variableMetrics = (dashboard.templating?.list ?? []).flatMap((variable) => [...JSON.stringify(variable.query ?? "").matchAll(/label_values\((\w+)/g)].map(([, name]) => name!));
    problems.push(...variableMetrics.filter((name) => resolve(name) === undefined).map((name) => `variable: ${name} is not a metric the service exports`));
    expect(problems).toEqual([]);
  });

  it("shows each subject an operator asks about", () => {
    const read = queryPanels.map(panelSelectors);
    const missing = Object.entries(SUBJECTS).flatMap(([subject, needs]) =>
      Object.entries(needs).flatMap(([what, need]) => (read.some((selectors) => selectors.some(need)) ? [] : [`${subject}: ${what}`])),
    );
    expect(missing).toEqual([]);
  });
});
