import swagger from "@fastify/swagger";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { createJsonSchemaTransform, createJsonSchemaTransformObject } from "fastify-type-provider-zod";
import type { ServiceSettings } from "../platform/config.js";
import type { Deps, ReceiverDeps } from "../platform/deps.js";
import { callbackRoutes } from "./callback-route.js";
import { MAX_ID_LENGTH } from "../usage/storable-text.js";
import { accountRoutes } from "./account-routes.js";
import { limitConnections } from "./connection-limit.js";
import { installErrorHandlers, sendError } from "./errors.js";
import { operatorRoutes } from "./operator-routes.js";
import { queueUiRoutes } from "./queue-ui.js";
import { consoleRoutes } from "./console.js";

/** What a server serves: a receiver's routes, or health and metrics alone (a worker's METRICS_PORT). */
export type ServerRole = "receiver" | "health-and-metrics";
/** A receiver's server reads the receiver's settings; a worker's health and metrics server only the service's. */
export type ServerDeps<R extends ServerRole> = R extends "receiver" ? ReceiverDeps : Deps<ServiceSettings>;

/**
 * The HTTP server; each route group is its own encapsulated context. Every process serves
 * health and metrics; a receiver also serves callbacks, the account API, the queue UI and the console.
 * `maxConnections`: what a started process derives from its file-descriptor limit (start.ts).
 */
export async function buildServer<R extends ServerRole = "receiver">(
  deps: ServerDeps<R>,
  role: R = "receiver" as R,
  maxConnections: number = deps.settings.maxConnections,
): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    // Silent and trickling sockets are closed in seconds. A request has 10 s for its headers
    // and 60 s in all, long enough for a gateway to send a large batch.
    http: { headersTimeout: 10_000, connectionsCheckingInterval: 1_000 },
    requestTimeout: 60_000,
    // A socket quiet for 10 s is closed; LiteLLM's client (httpx) drops its idle keep-alive
    // connections after 5 s, so it always closes first and never sends on a closing socket.
    connectionTimeout: 10_000,
    keepAliveTimeout: 10_000,
    forceCloseConnections: "idle",
    // Ids in paths are up to MAX_ID_LENGTH UTF-16 units, each up to 9 characters percent-encoded.
    routerOptions: { maxParamLength: MAX_ID_LENGTH * 9 },
    // A path that does not decode (percent-encoded invalid UTF-8) gets the one error shape too.
    frameworkErrors: (error, _request, reply) => sendError(reply, "bad_url", error.message),
  });
  limitConnections(app.server, maxConnections, (action) => deps.metrics.connectionsClosedAtCap.inc({ action }));
  installErrorHandlers(app);
  await app.register(async (scope) => operatorRoutes(scope, deps));
  if (role === "receiver") {
    const receiverDeps = deps as ReceiverDeps;
    await describeAccountApi(app);
    await app.register(async (scope) => callbackRoutes(scope, receiverDeps));
    await app.register(async (scope) => accountRoutes(scope, receiverDeps));
    await app.register(async (scope) => queueUiRoutes(scope, receiverDeps));
    await app.register(async (scope) => consoleRoutes(scope, receiverDeps));
  }
  return app;
}

/**
 * The account API's OpenAPI document at `/openapi.json`, made from the routes' own zod schemas
 * (only routes tagged `accounts`: the callback route and the operators' are described in
 * docs/reference/http-api.md). Registered before the routes, which it collects as they are added. Every
 * schema with an `id` (account-responses.ts, the request bodies) is a named component: a request
 * body's name ends in `Input`, as the type provider writes it.
 */
async function describeAccountApi(app: FastifyInstance): Promise<void> {
  const zodToJsonConfig = {
    // Credits are JSON integers of any size; JSON Schema has no bigint, so it is written as one.
    unrepresentable: "any",
    override: ({ zodSchema, jsonSchema }) => {
      if (zodSchema._zod.def.type === "bigint") Object.assign(jsonSchema, { type: "integer" });
    },
  } satisfies Parameters<typeof createJsonSchemaTransform>[0]["zodToJsonConfig"];
  const withComponents = createJsonSchemaTransformObject({ zodToJsonConfig });
  await app.register(swagger, {
    hideUntagged: true,
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "spend-ingest account API",
        version: "1",
        description: "Grants, balances, ledgers, invoices and receipts. Credits are exact integers; a month's totals may pass 2^53 − 1 and are still written as JSON integers.",
        license: { name: "Proprietary", identifier: "LicenseRef-Proprietary" },
      },
      // Relative: the receiver that serves this document serves the API, wherever it is deployed.
      servers: [{ url: "/", description: "the receiver that served this document" }],
      tags: [{ name: "accounts", description: "Credits in and out of billing accounts, and what they were charged" }],
      components: { securitySchemes: { adminToken: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN" } } },
    },
    transform: createJsonSchemaTransform({ zodToJsonConfig }),
    transformObject: (document) => withoutUnreachedSchemas(withComponents(document)),
  });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
}

const COMPONENT_SCHEMA = "#/components/schemas/";

/**
 * The document with only the component schemas its paths reach. The type provider writes every
 * named schema twice, as a request (`NameInput`) and as an answer (`Name`), and each is only
 * ever one of them; it writes every named schema of the process, too, whichever routes use it.
 */
function withoutUnreachedSchemas<Document extends { paths?: unknown; components?: { schemas?: Record<string, unknown> } }>(document: Document): Document {
  const schemas = document.components?.schemas ?? {};
  const reached = new Set<string>();
  const visit = (value: unknown): void => {
    if (value === null || typeof value !== "object") return;
    for (const [key, child] of Object.entries(value)) {
      if (key === "$ref" && typeof child === "string" && child.startsWith(COMPONENT_SCHEMA)) {
        const name = child.slice(COMPONENT_SCHEMA.length);
        if (!reached.has(name)) {
          reached.add(name);
          visit(schemas[name]);
        }
      } else {
        visit(child);
      }
    }
  };
  visit(document.paths);
  return {
    ...document,
    components: { ...document.components, schemas: Object.fromEntries(Object.entries(schemas).filter(([name]) => reached.has(name))) },
  };
}
