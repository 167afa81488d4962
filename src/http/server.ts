import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Deps } from "../deps.js";
import { callbackRoutes } from "../ingest/callback-route.js";
import { accountRoutes } from "./account-routes.js";
import { installErrorHandlers } from "./errors.js";
import { operatorRoutes } from "./operator-routes.js";
import { queueUiRoutes } from "./queue-ui.js";

export type ServerRoles = { receiver: boolean };

/**
 * The HTTP server; each route group is its own encapsulated context. Every process serves
 * health and metrics; a receiver also serves callbacks, the account API and the queue UI.
 */
export async function buildServer(deps: Deps, roles: ServerRoles = { receiver: true }): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    // Long enough for a slow gateway to finish a large batch; idle sockets close soon.
    requestTimeout: 60_000,
    forceCloseConnections: "idle",
  });
  installErrorHandlers(app);
  await app.register(async (scope) => operatorRoutes(scope, deps));
  if (roles.receiver) {
    await app.register(async (scope) => callbackRoutes(scope, deps));
    await app.register(async (scope) => accountRoutes(scope, deps));
    await app.register(async (scope) => queueUiRoutes(scope, deps));
  }
  return app;
}
