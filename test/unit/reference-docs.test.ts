import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ALERT_CATALOG } from "../../src/books/alert-catalog.js";
import { QUARANTINE_REASON_CATALOG } from "../../src/books/quarantine-reasons.js";
import { CALLBACK_REFUSAL_REASONS } from "../../src/usage/usage-event.js";
import { OPS_COMMANDS } from "../../src/ops/cli.js";
import { ERROR_CATALOG } from "../../src/receiver/error-catalog.js";
import { createMetrics } from "../../src/platform/metrics.js";
import { InvalidSettingError, parseSettings, ROLES, type SettingGroup, SETTING_NAMES, settingMeaning } from "../../src/platform/config.js";

// Each kind of name is declared once in code and listed once in its reference page: one table row
// whose first cell is the name in backticks. Each test fails on drift either way, a name in code
// the page lacks or a row for a name the code no longer has.

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

type Row = { name: string; cells: string[] };

/** The rows of the tables under `heading` (to the next heading of its level or above) that open with a name in backticks. */
function namedRows(page: string, heading: string): Row[] {
  const lines = page.split("\n");
  const start = lines.indexOf(heading);
  if (start === -1) throw new Error(`no heading ${heading}`);
  const level = heading.indexOf(" ");
  const end = lines.findIndex((line, index) => index > start && /^#+ /.test(line) && line.indexOf(" ") <= level);
  return lines.slice(start + 1, end === -1 ? undefined : end).flatMap((line) => {
    const row = /^\| `([^`]+)` \|(.*)\|$/.exec(line);
    return row ? [{ name: row[1]!, cells: row[2]!.split(" | ").map((cell) => cell.trim()) }] : [];
  });
}

/**
 * Every declared name has exactly one row, and every row names a declared name. Declared with a
 * cell (a record), each row's cell after the name must read it too.
 */
function expectOneRowEach(rows: Row[], declared: readonly string[] | Record<string, string>) {
  const names = Array.isArray(declared) ? declared : Object.keys(declared);
  const listed = rows.map((row) => row.name);
  expect({
    missing: names.filter((name) => !listed.includes(name)),
    unknown: listed.filter((name) => !names.includes(name)),
    repeated: listed.filter((name, index) => listed.indexOf(name) !== index),
  }).toEqual({ missing: [], unknown: [], repeated: [] });
  if (!Array.isArray(declared)) expect(Object.fromEntries(rows.map((row) => [row.name, row.cells[0]]))).toEqual(declared);
}

/** A catalog's names, each with what its row's cell after the name says. */
const cellOf = <T>(catalog: Record<string, T>, cell: (entry: T) => string) =>
  Object.fromEntries(Object.entries(catalog).map(([name, entry]) => [name, cell(entry)]));

/** Every group of settings, as some role reads them: all the settings there are. */
const EVERY_GROUP = [...new Set(Object.values(ROLES).flat())] as SettingGroup[];

/** The settings a process refuses to start without, as the code decides it. */
function requiredSettings(): string[] {
  try {
    parseSettings(EVERY_GROUP, {});
  } catch (error) {
    if (error instanceof InvalidSettingError) return error.problems.map((problem) => problem.setting);
    throw error;
  }
  return [];
}

describe("settings: the schema in src/platform/config.ts", () => {
  it("gives every setting a one-line meaning", () => {
    expect(SETTING_NAMES.filter((setting) => !/^[^\n]{10,}$/.test(settingMeaning(setting)))).toEqual([]);
  });

  it("docs/reference/configuration.md has one row for each", () => {
    expectOneRowEach(namedRows(read("docs/reference/configuration.md"), "## Every setting"), SETTING_NAMES);
  });

  // The rule: config/example.env is the whole template of a deployment. It names every setting
  // once: those a process cannot start without are set, every other is set or commented out
  // (`# NAME=value`), ENFORCE_* among them. Every value it gives, set or commented out, is one the
  // settings accept, so a copy starts as it is and each line can be uncommented as it is.
  it("config/example.env names every setting once, sets the required ones, and gives only values the settings accept", () => {
    const lines = [...read("config/example.env").matchAll(/^(# )?([A-Z][A-Z0-9_]*)=(.*)$/gm)].map(([, commented, name, value]) => ({
      name: name!,
      value: value!,
      set: commented === undefined,
    }));
    expectOneRowEach(
      lines.map((line) => ({ name: line.name, cells: [] })),
      SETTING_NAMES,
    );
    const set = lines.filter((line) => line.set);
    expect(requiredSettings().filter((setting) => !set.some((line) => line.name === setting))).toEqual([]);
    expect(() => parseSettings(EVERY_GROUP, Object.fromEntries(set.map((line) => [line.name, line.value])))).not.toThrow();
    expect(() => parseSettings(EVERY_GROUP, Object.fromEntries(lines.map((line) => [line.name, line.value])))).not.toThrow();
  });

  // The rule: docker-compose.yml passes only settings, and what it passes, with its own defaults
  // for the variables it reads from the shell, starts each role.
  it("docker-compose.yml passes only settings, and with its defaults each app service's settings are accepted", () => {
    const compose = parseYaml(read("docker-compose.yml"), { merge: true }) as {
      services: Record<string, { environment?: Record<string, string> }>;
    };
    // `${NAME:-default}` as compose reads it when the shell leaves NAME unset.
    const withDefaults = (value: string) => value.replace(/\$\{\w+(?::?-([^}]*))?\}/g, (_, fallback: string | undefined) => fallback ?? "");
    const roles = { migrate: ROLES.migrate, receiver: ROLES.receiver, worker: ROLES.worker };
    for (const [service, groups] of Object.entries(roles)) {
      const environment = compose.services[service]!.environment ?? {};
      expect(Object.keys(environment).filter((name) => !(SETTING_NAMES as string[]).includes(name)), service).toEqual([]);
      const source = Object.fromEntries(Object.entries(environment).map(([name, value]) => [name, withDefaults(String(value))]));
      expect(() => parseSettings(groups, source), service).not.toThrow();
    }
  });
});

describe("alerts: ALERT_CATALOG", () => {
  it("docs/reference/alerts.md has one row for each, at its level", () => {
    expectOneRowEach(
      namedRows(read("docs/reference/alerts.md"), "# Alerts"),
      cellOf(ALERT_CATALOG, (alert) => alert.level),
    );
  });
});

describe("metrics: the registry createMetrics builds, each with its help", () => {
  it("docs/reference/metrics.md has one row for each, with its labels; prom-client's default metrics by prefix (`name_*`)", () => {
    const rows = namedRows(read("docs/reference/metrics.md"), "# Metrics");
    const prefixes = rows.filter((row) => row.name.endsWith("*")).map((row) => row.name.slice(0, -1));
    // prom-client keeps each metric's label names on it, though its types do not say so.
    const metrics = createMetrics([])
      .registry.getMetricsAsArray()
      .map((metric) => ({ name: metric.name, help: metric.help, labels: (metric as { labelNames?: readonly string[] }).labelNames ?? [] }));
    expect(metrics.filter((metric) => metric.help.length < 10).map((metric) => metric.name)).toEqual([]);
    expect(prefixes.filter((prefix) => !metrics.some((metric) => metric.name.startsWith(prefix)))).toEqual([]);
    const ours = metrics.filter((metric) => !prefixes.some((prefix) => metric.name.startsWith(prefix)));
    expectOneRowEach(
      rows.filter((row) => !row.name.endsWith("*")),
      Object.fromEntries(ours.map((metric) => [metric.name, metric.labels.map((label) => `\`${label}\``).join(", ")])),
    );
  });
});

describe("HTTP error codes: ERROR_CATALOG", () => {
  it("docs/reference/errors.md has one row for each, with its status", () => {
    expectOneRowEach(
      namedRows(read("docs/reference/errors.md"), "## Codes"),
      cellOf(ERROR_CATALOG, (error) => String(error.status)),
    );
  });
});

describe("quarantine reasons: QUARANTINE_REASON_CATALOG", () => {
  it("holds every reason the receiver refuses an item for, at the receiver's stage", () => {
    expect(CALLBACK_REFUSAL_REASONS.filter((reason) => QUARANTINE_REASON_CATALOG[reason]?.stage !== "receiver")).toEqual([]);
  });

  it("docs/reference/quarantine.md has one row for each, at its stage", () => {
    expectOneRowEach(
      namedRows(read("docs/reference/quarantine.md"), "## Reasons"),
      cellOf(QUARANTINE_REASON_CATALOG, (reason) => reason.stage),
    );
  });
});

describe("ops commands: OPS_COMMANDS", () => {
  it("docs/reference/cli.md has one section for each command and subcommand (`### quarantine list, assign, replay`)", () => {
    const page = read("docs/reference/cli.md");
    const commands = page.slice(page.indexOf("## ops commands"));
    const documented = [...commands.matchAll(/^### (.+)$/gm)].flatMap(([, heading]) => {
      const [first, ...others] = heading!.split(", ");
      const parent = first!.includes(" ") ? `${first!.split(" ")[0]} ` : "";
      return [first!, ...others.map((other) => parent + other)];
    });
    const declared = OPS_COMMANDS.flatMap((command) =>
      command.commands.length === 0 ? [command.name()] : command.commands.map((sub) => `${command.name()} ${sub.name()}`),
    );
    expectOneRowEach(
      documented.map((name) => ({ name, cells: [] })),
      declared,
    );
  });
});
