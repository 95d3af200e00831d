import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ValveError, forbidden, invalidInput } from '../errors.js';
import type { Registry } from '../registry/index.js';
import { importRootfs } from './import-rootfs.js';

export interface BuildRoutesOptions {
  registry: Registry;
  /** The registry's own push rule for `repo` (the server passes `apps.authorizeImage`). */
  authorizePush: (
    request: FastifyRequest,
    repo: string,
  ) => Promise<'ok' | 'denied' | 'unauthenticated'>;
}

const query = z.strictObject({
  name: z.string().min(1),
  tag: z.string().min(1),
  /** JSON: `{"entrypoint":[...],"cmd":[...],"env":{...},"workingDir":"/",...}`. */
  config: z.string().optional(),
});

/**
 * `POST /api/teams/:team/images/import?name=<name>&tag=<tag>[&config=<json>]` with a root
 * filesystem tarball (`.tar` or `.tar.gz`) as the body, streamed into a single-layer image
 * `<team>/<name>:<tag>` (see import-rootfs.ts). Who may push that repository through the
 * registry may import into it. Answers 201 with the image's reference, digest and size.
 */
export function buildRoutes(options: BuildRoutesOptions) {
  return async (app: FastifyInstance) => {
    // The body is the tarball, streamed as it arrives, whatever its declared type.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

    app.post('/api/teams/:team/images/import', async (request, reply) => {
      const { team } = request.params as { team: string };
      const parsed = query.safeParse(request.query);
      if (!parsed.success) {
        throw invalidInput(
          parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '),
        );
      }
      const repo = `${team}/${parsed.data.name}`;
      const decision = await options.authorizePush(request, repo);
      if (decision === 'unauthenticated') throw new ValveError('AUTH_REQUIRED');
      if (decision !== 'ok') throw forbidden(`not allowed to push images to ${repo}`);
      let config: unknown;
      try {
        config = parsed.data.config === undefined ? undefined : JSON.parse(parsed.data.config);
      } catch {
        throw invalidInput('config: expected a JSON object');
      }
      if (config !== undefined && (typeof config !== 'object' || config === null)) {
        throw invalidInput('config: expected a JSON object');
      }
      if (!request.body) throw invalidInput('tarball: the request has no body');
      const imported = await importRootfs({
        tarball: request.body as NodeJS.ReadableStream,
        registry: options.registry,
        repo,
        tag: parsed.data.tag,
        config: config as Parameters<typeof importRootfs>[0]['config'],
      });
      request.log.info({ repo, tag: parsed.data.tag, digest: imported.digest }, 'rootfs imported');
      return reply.code(201).send({ repo, tag: parsed.data.tag, ...imported });
    });
  };
}
