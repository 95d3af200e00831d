import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthService, Principal } from '../auth/index.js';
import type { DeployService } from '../deploy/index.js';
import { ValveError } from '../errors.js';
import { parseInput } from '../http/errors.js';
import { requirePrincipal } from '../http/principal.js';
import type { PipelineService } from '../pipelines/index.js';
import { AppService, createAppInput, updateAppInput, type AppRecord } from './service.js';
import { listTemplates } from './templates.js';

export interface AppRoutesOptions {
  apps: AppService;
  auth: AuthService;
  deploy: DeployService;
  pipelines: PipelineService;
  /** Base URL clients reach this server at, e.g. http://127.0.0.1:7080 */
  baseUrl(request: FastifyRequest): string;
}

export function appRoutes(options: AppRoutesOptions) {
  const { apps, auth, deploy, pipelines } = options;

  /**
   * `access`: `team` for members of the app's team; `approver` for members of a team that
   * approves changes to one of its environments, who see its environments (as the deploy API
   * lets them) but not its runs.
   */
  const view = async (
    request: FastifyRequest,
    app: AppRecord,
    access: 'team' | 'approver' = 'team',
  ) => {
    const base = options.baseUrl(request);
    const lastRun =
      access === 'team' ? (await pipelines.list([app.id], { limit: 1 }))[0] : undefined;
    return {
      access,
      team: app.team,
      name: app.name,
      template: app.template,
      createdAt: app.created_at,
      createdBy: app.created_by,
      gitUrl: `${base}/git/${app.team}/${app.name}.git`,
      deployGitUrl: `${base}/git/${app.team}/${app.name}.deploy.git`,
      image: `${new URL(base).host}/${app.team}/${app.name}`,
      imagePublic: app.image_public === 1,
      environments: await deploy.environments(app.team, app.name),
      lastRun: lastRun ? await pipelines.view(lastRun) : null,
    };
  };

  /** Is the user an active member of a team that approves changes to the app? */
  const approvesFor = async (principal: Principal, team: string, app: string) => {
    for (const approving of await deploy.approvingTeams(team, app))
      if (await auth.isMember(principal, approving)) return true;
    return false;
  };

  return async function (server: FastifyInstance) {
    server.get('/api/templates', async (request) => {
      await requirePrincipal(auth, request);
      return listTemplates();
    });

    server.get('/api/apps', async (request) => {
      const principal = await requirePrincipal(auth, request);
      return Promise.all((await apps.listFor(principal)).map((app) => view(request, app)));
    });

    server.post('/api/apps', async (request, reply) => {
      const principal = await requirePrincipal(auth, request);
      const app = await apps.create(principal, parseInput(createAppInput, request.body));
      return reply.status(201).send(await view(request, app));
    });

    server.get<{ Params: { team: string; app: string } }>(
      '/api/apps/:team/:app',
      async (request) => {
        const principal = await requirePrincipal(auth, request);
        const { team, app } = request.params;
        try {
          return await view(request, await apps.access(principal, team, app));
        } catch (error) {
          // Not in the app's team: a member of one of its approving teams still sees it.
          if (!(error instanceof ValveError && error.code === 'NOT_FOUND')) throw error;
          const found = await apps.find(team, app);
          if (!found || !(await approvesFor(principal, team, app))) throw error;
          return view(request, found, 'approver');
        }
      },
    );

    // Team admins only: `imagePublic` lets anyone pull the app's image without signing in.
    server.patch<{ Params: { team: string; app: string } }>(
      '/api/apps/:team/:app',
      async (request) => {
        const principal = await requirePrincipal(auth, request);
        const { team, app } = request.params;
        return view(
          request,
          await apps.update(principal, team, app, parseInput(updateAppInput, request.body)),
        );
      },
    );

    // Environments, diff, sync, deploys, promotions, rollbacks: src/deploy/routes.ts.
  };
}
