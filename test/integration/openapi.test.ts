import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { accountRoutes } from "../../src/receiver/account-routes.js";
import { useServiceHarness } from "../support/harness.js";

const h = useServiceHarness({}, { worker: false });

const HTTP_API = fileURLToPath(new URL("../../docs/reference/http-api.md", import.meta.url));

/**
 * A route as `post /v1/accounts/{}/grants`. Its path parameters are left unnamed: they are no part
 * of what a client sends, and the reference names them for its prose (`{from}` of a transfer).
 */
const routeOf = (method: string, path: string) => `${method.toLowerCase()} ${path.replace(/\{\w+\}/g, "{}")}`;

/** The account API as the route table of docs/reference/http-api.md lists it: the rows whose section is the account API. */
function documentedAccountRoutes(): string[] {
  const rows = readFileSync(HTTP_API, "utf8").split("\n").map((line) => line.split("|").map((cell) => cell.trim()));
  return rows
    .filter((cells) => cells[3]?.startsWith("[account API]"))
    .flatMap((cells) => [...cells[1]!.matchAll(/`([A-Z]+) (\/[^`]*)`/g)].map(([, method, path]) => routeOf(method!, path!)));
}

type Schema = { $ref?: string; properties?: Record<string, unknown> };
type Operation = {
  operationId?: string;
  parameters?: Array<{ in: string; name: string; required?: boolean; schema: Schema }>;
  requestBody?: { content: Record<string, { schema: Schema }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Schema }> }>;
  security?: unknown[];
};

type LintProblem = { ruleId: string; severity: string; message: string; location: Array<{ pointer: string }> };

/**
 * Redocly's own linter on `document`, with its recommended rules, as `redocly lint` runs it. Offline:
 * telemetry is off, and it runs in an empty folder, so no configuration file there can turn a rule off.
 */
async function redoclyLint(document: unknown): Promise<LintProblem[]> {
  const folder = await mkdtemp(join(tmpdir(), "spend-ingest-openapi-"));
  try {
    await writeFile(join(folder, "openapi.json"), JSON.stringify(document));
    const cli = createRequire(import.meta.url).resolve("@redocly/cli/bin/cli.js");
    const env = { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" };
    // It exits 1 when it finds an error; the report on stdout says what it found either way.
    const stdout = await new Promise<string>((resolve) => {
      execFile(process.execPath, [cli, "lint", "openapi.json", "--extends=recommended", "--format=json"], { cwd: folder, env }, (_error, out) => resolve(out));
    });
    return (JSON.parse(stdout) as { problems: LintProblem[] }).problems;
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

describe("GET /openapi.json", () => {
  it("passes Redocly's recommended rules with no error and no warning", async () => {
    const document = (await h.app.inject({ method: "GET", url: "/openapi.json" })).json();
    const problems = await redoclyLint(document);
    expect(problems.map((problem) => `${problem.severity} ${problem.ruleId} at ${problem.location[0]?.pointer}: ${problem.message}`)).toEqual([]);
  });

  it("describes every account route, and nothing else, from the routes' own schemas, each one named", async () => {
    const response = await h.app.inject({ method: "GET", url: "/openapi.json" });
    expect(response.statusCode).toBe(200);
    const document = response.json() as {
      openapi: string;
      paths: Record<string, Record<string, Operation>>;
      components: { schemas: Record<string, Schema> };
    };
    expect(document.openapi).toBe("3.1.0");
    const operations = Object.entries(document.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ method, path, operation })));
    expect(operations.map(({ method, path }) => routeOf(method, path)).sort()).toEqual(documentedAccountRoutes().sort());
    // Every body and answer is a named component, so a client generated from it names its types.
    const componentName = (schema: Schema | undefined) => /^#\/components\/schemas\/(\w+)$/.exec(String(schema?.$ref))?.[1];
    const named = (schema: Schema | undefined) => {
      expect(schema).toEqual({ $ref: expect.stringMatching(/^#\/components\/schemas\/\w+$/) });
      return document.components.schemas[componentName(schema)!]!;
    };

    // Named as the reference says: createGrant, getReceipt…, and a request body after its operation (CreateGrantInput).
    expect(new Set(operations.map(({ operation }) => operation.operationId)).size).toBe(operations.length);
    for (const { method, path, operation } of operations) {
      const operationId = operation.operationId ?? "";
      expect(operationId).toMatch(method === "post" ? /^create[A-Z]\w+$/ : /^get[A-Z]\w+$/);
      const pathParameter = /\{(\w+)\}/.exec(path)?.[1];
      const declared = operation.parameters?.find((parameter) => parameter.in === "path");
      if (pathParameter === undefined) expect(declared).toBeUndefined();
      else expect(declared).toMatchObject({ name: pathParameter, required: true });
      expect(operation.security).toEqual([{ adminToken: [] }]);
      if (method === "post") expect(componentName(operation.requestBody?.content["application/json"]?.schema)).toBe(`${operationId[0]!.toUpperCase()}${operationId.slice(1)}Input`);
      for (const [status, { content }] of Object.entries(operation.responses)) {
        const answer = content?.["application/json"]?.schema;
        expect(named(answer)).toHaveProperty("properties");
        if (status.startsWith("2")) expect(componentName(answer)).not.toBe("Error");
        else expect(componentName(answer)).toBe("Error");
      }
      // Success, and the error shape for every failure the route can answer.
      expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining([method === "post" ? "201" : "200", "400", "401", "503"]));
    }
    expect(document.components.schemas.Error).toMatchObject({ properties: { error: { type: "object" } } });

    const grants = document.paths["/v1/accounts/{id}/grants"]!.post!;
    expect(named(grants.requestBody!.content["application/json"]!.schema)).toMatchObject({
      required: expect.arrayContaining(["credits", "reference"]),
      properties: { credits: { type: "integer", exclusiveMinimum: 0 } },
    });
    expect(Object.keys(grants.responses).sort()).toEqual(["200", "201", "400", "401", "409", "422", "503"]);
    const summary = named(document.paths["/v1/accounts/{id}/credits/summary"]!.get!.responses["200"]!.content!["application/json"]!.schema);
    // Credits of any size: JSON integers, whether a double holds them or not.
    expect(JSON.stringify(summary.properties!.balance_credits)).not.toContain('"type":"string"');
    const ledgerQuery = document.paths["/v1/accounts/{id}/ledger"]!.get!.parameters!.filter((parameter) => parameter.in === "query");
    expect(ledgerQuery.map((parameter) => parameter.name).sort()).toEqual(["cursor", "limit"]);
    // The usage routes' filters are query parameters, each described; only the all-accounts read groups by account.
    const usageQuery = (path: string) => document.paths[path]!.get!.parameters!.filter((parameter) => parameter.in === "query");
    expect(usageQuery("/v1/accounts/{id}/usage").map((parameter) => parameter.name).sort()).toEqual(["cursor", "from", "granularity", "group_by", "limit", "to"]);
    expect(usageQuery("/v1/accounts/{id}/usage").filter((parameter) => parameter.required).map((parameter) => parameter.name).sort()).toEqual(["from", "granularity", "to"]);
    expect(usageQuery("/v1/usage").find((parameter) => parameter.name === "group_by")!.schema).toMatchObject({ enum: ["model", "key", "team", "account"] });
  });

  it("is served without the admin token (it holds no data), while the routes it describes need it", async () => {
    expect((await h.app.inject({ method: "GET", url: "/openapi.json" })).statusCode).toBe(200);
    const unauthenticated = await h.app.inject({ method: "GET", url: "/v1/accounts/acct-openapi/credits/summary" });
    expect(unauthenticated.statusCode).toBe(401);
    expect(unauthenticated.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it("refuses to start an account route that does not declare its schemas", async () => {
    const app = Fastify();
    await expect(
      app.register(async (scope) => {
        await accountRoutes(scope, h.deps);
        scope.get("/v1/accounts/:id/undocumented", async () => ({}));
      }),
    ).rejects.toThrow("GET /v1/accounts/:id/undocumented: an account route declares its operationId, summary, params, response schemas and the accounts tag");
    await app.close();
  });

  it("answers a request its schema refuses in the one error shape, naming the field", async () => {
    const response = await h.admin("POST", "/v1/accounts/acct-openapi/grants", { credits: 0, reference: "r-1" });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({
      error: { code: "invalid_request", message: expect.stringMatching(/^credits: /), issues: [{ path: "credits" }] },
    });
  });
});
