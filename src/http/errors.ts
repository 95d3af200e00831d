import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ValveError, errorTable } from '../errors.js';
import { isRegistryError } from '../registry/index.js';

/** The one place that turns errors into HTTP responses for the JSON API. */
export function replyWithError(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof ValveError) {
    // Git needs the Basic challenge to send credentials; a browser given one on /api/ would
    // pop up its own password dialog over the console.
    if (error.status === 401 && !request.url.startsWith('/api/')) {
      reply.header('WWW-Authenticate', 'Basic realm="Valve"');
    }
    return reply
      .status(error.status)
      .send({ error: { code: error.code, message: error.message, ...error.details } });
  }
  if (isRegistryError(error)) {
    // A registry error reaching the JSON API (e.g. through a deploy) keeps its spec code.
    return reply
      .status(error.status)
      .send({ error: { code: `OCI_${error.code}`, message: error.message } });
  }
  if (error instanceof z.ZodError) {
    return reply.status(400).send({
      error: { code: 'INPUT_INVALID', message: describeZodError(error), issues: error.issues },
    });
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.statusCode && fastifyError.statusCode < 500) {
    return reply.status(fastifyError.statusCode).send({
      error: { code: 'INPUT_INVALID', message: fastifyError.message },
    });
  }
  request.log.error({ err: error }, 'request failed');
  return reply
    .status(500)
    .send({ error: { code: 'INTERNAL', message: errorTable.INTERNAL.message } });
}

/** "username: expected ...; password: ..." naming each parameter that failed. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length ? issue.path.join('.') : '(body)'}: ${issue.message}`)
    .join('; ');
}

export function parseInput<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value ?? {});
  if (!result.success) {
    throw new ValveError('INPUT_INVALID', describeZodError(result.error), {
      issues: result.error.issues,
    });
  }
  return result.data;
}
