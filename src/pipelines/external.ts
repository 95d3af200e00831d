/**
 * Pipelines for repositories hosted elsewhere: an app linked to a GitHub, GitLab or Gitea
 * repository gets that provider's push webhooks at `POST /hooks/<provider>/<team>/<app>`. Each
 * verified push is mirrored into the app's source repo at Valve and then runs like a git push.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { z } from 'zod';
import type { Role } from '../auth/index.js';
import { ValveError, notFound } from '../errors.js';
import { mirrorCommit, parsePushEvent, verifyWebhook } from '../git/webhooks/index.js';
import { parseInput } from '../http/errors.js';
import type { PipelineTables } from './migrations.js';
import type { SecretCipher } from './secrets/index.js';
import type { AppRef, PipelineService } from './service.js';

const providers = ['github', 'gitlab', 'gitea'] as const;
const linkBody = z.object({
  provider: z.enum(providers),
  url: z
    .string()
    .url('expected the repository clone URL (http or https)')
    .refine((u) => /^https?:/.test(u), 'expected an http or https URL'),
  secret: z.string().min(16, 'expected at least 16 characters'),
  username: z.string().max(200).optional(),
  password: z.string().max(4096).optional(),
});

export interface ExternalRoutesOptions {
  db: Kysely<PipelineTables>;
  cipher: SecretCipher;
  pipelines: PipelineService;
  appAccess(request: FastifyRequest, team: string, app: string, minimum: Role): Promise<AppRef>;
  /** The app by name, without an access check (webhooks authenticate by signature). */
  findApp(team: string, app: string): Promise<AppRef | undefined>;
  sourceGitDir(team: string, app: string): string;
}

export function externalRoutes(options: ExternalRoutesOptions) {
  const { db, cipher } = options;
  const aad = (appId: string, what: string) => `external/${appId}/${what}`;

  return async function (app: FastifyInstance) {
    app.get<{ Params: { team: string; app: string } }>(
      '/api/apps/:team/:app/external',
      async (request) => {
        const record = await options.appAccess(
          request,
          request.params.team,
          request.params.app,
          'viewer',
        );
        const row = await db
          .selectFrom('external_repos')
          .select(['provider', 'url', 'username'])
          .where('app_id', '=', record.id)
          .executeTakeFirst();
        return row ?? null;
      },
    );

    app.put<{ Params: { team: string; app: string } }>(
      '/api/apps/:team/:app/external',
      async (request, reply) => {
        const record = await options.appAccess(
          request,
          request.params.team,
          request.params.app,
          'admin',
        );
        const body = parseInput(linkBody, request.body);
        const row = {
          app_id: record.id,
          provider: body.provider,
          url: body.url,
          username: body.username ?? null,
          sealed_secret: cipher.encrypt(body.secret, aad(record.id, 'secret')),
          sealed_password: body.password
            ? cipher.encrypt(body.password, aad(record.id, 'password'))
            : null,
        };
        await db
          .insertInto('external_repos')
          .values(row)
          .onConflict((oc) => oc.column('app_id').doUpdateSet(row))
          .execute();
        return reply.status(204).send();
      },
    );

    app.delete<{ Params: { team: string; app: string } }>(
      '/api/apps/:team/:app/external',
      async (request, reply) => {
        const record = await options.appAccess(
          request,
          request.params.team,
          request.params.app,
          'admin',
        );
        await db.deleteFrom('external_repos').where('app_id', '=', record.id).execute();
        return reply.status(204).send();
      },
    );

    // The webhook needs the exact bytes for the signature: parse JSON ourselves.
    await app.register(async (hooks) => {
      hooks.removeAllContentTypeParsers();
      hooks.addContentTypeParser(
        '*',
        { parseAs: 'buffer', bodyLimit: 5 * 1024 * 1024 },
        (_request, body, done) => done(null, body),
      );
      hooks.post<{ Params: { provider: string; team: string; app: string } }>(
        '/hooks/:provider/:team/:app',
        async (request, reply) => {
          const provider = parseInput(z.enum(providers), request.params.provider);
          const record = await options.findApp(request.params.team, request.params.app);
          const link =
            record &&
            (await db
              .selectFrom('external_repos')
              .selectAll()
              .where('app_id', '=', record.id)
              .executeTakeFirst());
          // Unknown app and unlinked app look the same to the caller.
          if (!record || !link || link.provider !== provider) throw notFound('webhook');
          const raw = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
          const verdict = verifyWebhook(
            provider,
            request.headers,
            raw,
            cipher.decrypt(link.sealed_secret, aad(record.id, 'secret')),
          );
          if (!verdict.ok)
            throw new ValveError('AUTH_BAD_CREDENTIALS', `webhook signature: ${verdict.reason}`);
          let payload: unknown;
          try {
            payload = JSON.parse(raw.toString('utf8'));
          } catch {
            throw new ValveError(
              'INPUT_INVALID',
              'body: expected JSON (set the webhook content type to application/json)',
            );
          }
          const event = parsePushEvent(provider, request.headers, payload);
          if ('ignored' in event) return reply.status(202).send({ ignored: event.ignored });
          if (event.deleted) return reply.status(202).send({ ignored: 'branch deleted' });
          const gitDir = options.sourceGitDir(record.team, record.name);
          // Providers give up after ~10 s: answer first, then fetch the commit and start the runs.
          void (async () => {
            await mirrorCommit({
              gitDir,
              url: link.url,
              ref: event.ref,
              commit: event.after,
              credentials:
                link.username && link.sealed_password
                  ? {
                      username: link.username,
                      password: cipher.decrypt(link.sealed_password, aad(record.id, 'password')),
                    }
                  : undefined,
            });
            await options.pipelines.onPush({
              app: record,
              gitDir,
              ref: event.ref,
              before: event.before,
              commit: event.after,
              pusher: event.pusher,
              event: 'webhook',
            });
          })().catch((error: unknown) =>
            request.log.error(
              { err: error, app: `${record.team}/${record.name}` },
              'webhook push failed',
            ),
          );
          return reply.status(202).send({ accepted: event.after });
        },
      );
    });
  };
}
