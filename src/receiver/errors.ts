import type { FastifyError, FastifyInstance, FastifyReply } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { z } from "zod";
import { isDatabaseUnavailable } from "../platform/db/client.js";
import { ERROR_CATALOG, type ErrorCode, type ErrorCodeSentWith } from "./error-catalog.js";

/** The one error shape, as routes declare it in their response schemas. */
export const errorResponseSchema = z
  .object({
    error: z
      .object({
        code: z.string(),
        message: z.string(),
        issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
      })
      .catchall(z.unknown()),
  })
  .meta({ id: "Error", description: "The one error shape: a stable code, a message naming the field, and anything the code adds" });

/** The one error shape at the HTTP edge, with the status the catalog gives its code. */
export function sendError(reply: FastifyReply, code: ErrorCodeSentWith<number>, message: string, extra: Record<string, unknown> = {}): FastifyReply {
  return sendErrorWithStatus(reply, ERROR_CATALOG[code].status, code, message, extra);
}

function sendErrorWithStatus(reply: FastifyReply, status: number, code: ErrorCode, message: string, extra: Record<string, unknown> = {}): FastifyReply {
  return reply.code(status).send({ error: { code, message, ...extra } });
}

/** A request refused before its route's schema sees it (its body's bytes or numbers), answered as the schema's refusals are. */
export class InvalidRequestError extends Error {
  constructor(readonly issues: Array<{ path: string; message: string }>) {
    super(`${issues[0]?.path || "the request"}: ${issues[0]?.message ?? "invalid"}`);
  }
}

/** A request its route's schema refuses: 400 naming the first field, with every issue listed. */
function sendInvalidRequest(reply: FastifyReply, issues: Array<{ path: string; message: string }>): FastifyReply {
  return sendError(reply, "invalid_request", `${issues[0]?.path || "the request"}: ${issues[0]?.message ?? "invalid"}`, { issues });
}

/** Fastify's own refusals with a code of ours, by Fastify's code. */
const FASTIFY_CODES: Record<string, ErrorCodeSentWith<number>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "body_too_large",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_EMPTY_JSON_BODY: "empty_body",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "invalid_content_length",
};

export function installErrorHandlers(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) => sendError(reply, "not_found", `no route ${request.method} ${request.url}`));
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      return sendInvalidRequest(
        reply,
        error.validation.map((issue) => ({ path: issue.instancePath.slice(1).replaceAll("/", "."), message: issue.message ?? "invalid" })),
      );
    }
    if (error instanceof InvalidRequestError) return sendInvalidRequest(reply, error.issues);
    const known = error.code ? FASTIFY_CODES[error.code] : undefined;
    if (known) return sendError(reply, known, error.message);
    const status = error.statusCode ?? 500;
    if (status < 500) return sendErrorWithStatus(reply, status, "bad_request", error.message);
    if (isDatabaseUnavailable(error)) {
      request.log.warn({ err: error }, "database unavailable");
      reply.header("retry-after", "5");
      return sendError(reply, "database_unavailable", "the database does not answer; try again shortly");
    }
    request.log.error({ err: error }, "request failed");
    return sendError(reply, "internal_error", "internal error");
  });
}
