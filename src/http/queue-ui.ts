import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { FastifyAdapter } from "@bull-board/fastify";
import type { FastifyInstance } from "fastify";
import type { Deps } from "../deps.js";
import { basicAuthMatches } from "./auth.js";

export const QUEUE_UI_PATH = "/admin/queues";

/** Bull Board over every queue of the service, behind basic auth `admin:$ADMIN_TOKEN`. */
export async function queueUiRoutes(app: FastifyInstance, deps: Deps): Promise<void> {
  app.addHook("onRequest", async (request, reply) => {
    if (!basicAuthMatches(request.headers.authorization, deps.settings.adminToken)) {
      return reply
        .code(401)
        .header("www-authenticate", 'Basic realm="spend-ingest queues", charset="UTF-8"')
        .send({ error: { code: "unauthorized", message: "the queue UI needs admin credentials" } });
    }
  });
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUE_UI_PATH);
  createBullBoard({ queues: [new BullMQAdapter(deps.usageQueue)], serverAdapter });
  await app.register(serverAdapter.registerPlugin(), { prefix: QUEUE_UI_PATH });
}
