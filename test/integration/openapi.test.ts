import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { accountRoutes } from "../../src/receiver/account-routes.js";
import { useServiceHarness } from "../support/harness.js";

const h = useServiceHarness({}, { worker: false });

// The account API as docs/reference/http-api.md lists it.
const ACCOUNT_ROUTES = [
  ["post", "/v1/accounts/{id}/grants"],
  ["post", "/v1/accounts/{id}/debits"],
  ["post", "/v1/accounts/{id}/transfers"],
  ["get", "/v1/accounts/{id}/credits/summary"],
  ["get", "/v1/accounts/{id}/ledger"],
  ["get", "/v1/accounts/{id}/invoice"],
  ["get", "/v1/receipts/{key}"],
  ["post", "/v1/receipts/{key}/reversals"],
] as const;

type Operation = {
  parameters?: Array<{ in: string; name: string; required?: boolean; schema: Record<string, unknown> }>;
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Record<string, unknown> }> }>;
  security?: unknown[];
};

describe("GET /openapi.json", () => {
  it("describes every account route, and nothing else, from the routes' own schemas", async () => {
    const response = await h.app.inject({ method: "GET", url: "/openapi.json" });
    expect(response.statusCode).toBe(200);
    const document = response.json() as { openapi: string; paths: Record<string, Record<string, Operation>> };
    expect(document.openapi).toBe("3.1.0");
    const described = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method} ${path}`));
    expect(described.sort()).toEqual(ACCOUNT_ROUTES.map(([method, path]) => `${method} ${path}`).sort());

    for (const [method, path] of ACCOUNT_ROUTES) {
      const operation = document.paths[path]![method]!;
      const pathParameter = /\{(\w+)\}/.exec(path)![1];
      expect(operation.parameters?.find((parameter) => parameter.in === "path")).toMatchObject({ name: pathParameter, required: true });
      expect(operation.security).toEqual([{ adminToken: [] }]);
      // Success, and the error shape for every failure the route can answer.
      for (const status of ["400", "401", "503"]) {
        expect(operation.responses[status]?.content?.["application/json"]?.schema).toMatchObject({ properties: { error: { type: "object" } } });
      }
      const success = operation.responses[method === "post" ? "201" : "200"]!;
      expect(success.content!["application/json"]!.schema).toHaveProperty("properties");
    }

    const grants = document.paths["/v1/accounts/{id}/grants"]!.post!;
    expect(grants.requestBody!.content["application/json"]!.schema).toMatchObject({
      required: expect.arrayContaining(["credits", "reference"]),
      properties: { credits: { type: "integer", exclusiveMinimum: 0 } },
    });
    expect(Object.keys(grants.responses).sort()).toEqual(["200", "201", "400", "401", "409", "422", "503"]);
    const summary = document.paths["/v1/accounts/{id}/credits/summary"]!.get!.responses["200"]!.content!["application/json"]!.schema;
    // Credits of any size: JSON integers, whether a double holds them or not.
    expect(JSON.stringify((summary as { properties: Record<string, unknown> }).properties.balance_credits)).not.toContain('"type":"string"');
    const ledgerQuery = document.paths["/v1/accounts/{id}/ledger"]!.get!.parameters!.filter((parameter) => parameter.in === "query");
    expect(ledgerQuery.map((parameter) => parameter.name).sort()).toEqual(["cursor", "limit"]);
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
    ).rejects.toThrow("GET /v1/accounts/:id/undocumented: an account route declares its params, its response schemas and the accounts tag");
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
