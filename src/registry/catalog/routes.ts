import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Role } from '../../auth/index.js';
import { ValveError, forbidden, invalidInput, notFound } from '../../errors.js';
import { isSha256Digest, type AccessDecision, type RegistryAction } from '../index.js';
import type { ImageCatalog } from './catalog.js';

export interface CatalogRoutesOptions {
  catalog: ImageCatalog;
  /** The registry's own rule: may the caller pull from (read) or push to (change) `repo`? */
  authorize(request: FastifyRequest, repo: string, action: RegistryAction): Promise<AccessDecision>;
  /** Throws (401, or 404 for a team the caller is not in) unless the caller has `minimum`. */
  teamAccess(request: FastifyRequest, team: string, minimum: Role): Promise<void>;
}

type TeamParams = { Params: { team: string } };
type AppParams = { Params: { team: string; app: string } };
type ManifestParams = { Params: { team: string; app: string; reference: string } };
type TagParams = { Params: { team: string; app: string; tag: string } };

/** The spec's tag grammar. */
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/**
 * The image catalog for the console and the CLI (`/api/teams/:team/images/...`): the same
 * access as the registry itself (pull to read, push to delete a tag), and 404 for what the
 * caller may not see, so other teams' names do not leak.
 */
export function catalogRoutes(options: CatalogRoutesOptions) {
  const { catalog } = options;

  /** `<team>/<app>` if the caller may do `action` on it; throws 401, 403 or 404 otherwise. */
  const repository = async (
    request: FastifyRequest,
    team: string,
    app: string,
    action: RegistryAction,
  ) => {
    const repo = `${team}/${app}`;
    const decision = await options.authorize(request, repo, action);
    if (decision === 'ok') return repo;
    if (decision === 'unauthenticated') throw new ValveError('AUTH_REQUIRED');
    if (action === 'push' && (await options.authorize(request, repo, 'pull')) === 'ok') {
      throw forbidden(`deleting tags of ${repo} needs the developer role in team ${team}`);
    }
    throw notFound(`image repository ${repo}`);
  };

  return async function (server: FastifyInstance) {
    server.get<TeamParams>('/api/teams/:team/images', async (request) => {
      const { team } = request.params;
      await options.teamAccess(request, team, 'viewer');
      const visible = [];
      for (const repo of await catalog.repositoriesOf(team)) {
        // A repository whose app is gone stays in the store but is nobody's to browse.
        if ((await options.authorize(request, repo, 'pull')) === 'ok') visible.push(repo);
      }
      return Promise.all(visible.map((repo) => catalog.summary(repo)));
    });

    server.get<AppParams>('/api/teams/:team/images/:app/tags', async (request) => {
      const repo = await repository(request, request.params.team, request.params.app, 'pull');
      return catalog.tags(repo);
    });

    server.get<ManifestParams>(
      '/api/teams/:team/images/:app/manifests/:reference',
      async (request) => {
        const { team, app, reference } = request.params;
        const repo = await repository(request, team, app, 'pull');
        if (!isSha256Digest(reference) && !TAG.test(reference)) {
          throw invalidInput(`"${reference}" is neither a digest (sha256:<64 hex>) nor a tag`);
        }
        const detail = await catalog.manifest(repo, reference);
        if (!detail) throw notFound(`manifest ${reference} in ${repo}`);
        return detail;
      },
    );

    server.delete<TagParams>('/api/teams/:team/images/:app/tags/:tag', async (request, reply) => {
      const { team, app, tag } = request.params;
      const repo = await repository(request, team, app, 'push');
      if (!TAG.test(tag)) throw invalidInput(`"${tag}" is not a tag`);
      if (!(await catalog.deleteTag(repo, tag))) throw notFound(`tag ${tag} in ${repo}`);
      return reply.status(204).send();
    });
  };
}
