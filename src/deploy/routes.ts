/**
 * The deploy API: environments, diff, sync, deploy, promote, rollback, history, approvals
 * (`/api/apps/:team/:app/...`) and the targets of a team (`/api/teams/:team/targets`).
 * Viewers read, developers change environments that need no approval, members of the
 * approving team decide approvals and read the environments (not change them: 403); other
 * teams get 404. docs/api.md describes each endpoint.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Principal, Role } from '../auth/index.js';
import { ValveError, forbidden, notFound } from '../errors.js';
import { parseInput } from '../http/errors.js';
import type { ChangeResult } from './promotion.js';
import type { DeployService } from './service.js';
import { targetInput } from './targets-registry.js';

export interface DeployRoutesOptions {
  deploy: DeployService;
  principal(request: FastifyRequest): Promise<Principal>;
  /** The app if the caller may see it with at least `minimum` role; throws 401/404 otherwise. */
  appAccess(
    request: FastifyRequest,
    team: string,
    app: string,
    minimum: Role,
  ): Promise<{ team: string; name: string }>;
  /** Throws unless the caller has at least `minimum` role in the team (404 for non-members). */
  teamAccess(request: FastifyRequest, team: string, minimum: Role): Promise<void>;
  /** Is the user an active member of the team? (approvals) */
  isMember(principal: Principal, team: string): Promise<boolean>;
}

type AppParams = { Params: { team: string; app: string } };
type EnvParams = { Params: { team: string; app: string; env: string } };
type ApprovalParams = { Params: { team: string; app: string; id: string } };

const environmentName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'expected an environment name');
const deployBody = z.strictObject({
  image: z.string().min(1, 'expected an image digest or reference').max(500),
});
const promoteBody = z.strictObject({ from: environmentName, to: environmentName });
const rollbackBody = z
  .strictObject({
    commit: z.string().min(4).max(40).optional(),
    stepsBack: z.number().int().min(1).max(1000).optional(),
  })
  .refine((body) => !(body.commit && body.stepsBack), 'give either commit or stepsBack, not both');
const syncBody = z.strictObject({ prune: z.boolean().optional() });
const decisionBody = z.strictObject({ comment: z.string().max(2000).optional() });
const historyQuery = z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) });
const approvalsQuery = z.object({
  status: z.enum(['pending', 'approved', 'rejected', 'expired', 'superseded', 'failed']).optional(),
});

export function deployRoutes(options: DeployRoutesOptions) {
  const { deploy } = options;

  /** Members of the app's team read; so do members of a team that approves changes to it. */
  const readAccess = async (request: FastifyRequest, team: string, app: string) => {
    if (await canSee(request, team, app)) return;
    if ((await approverTeams(request, team, app, 'approving')).length === 0)
      throw notFound(`app ${team}/${app}`);
  };

  /** Developers of the app's team change environments; an approver learns why not (403). */
  const changeAccess = async (request: FastifyRequest, team: string, app: string) => {
    try {
      const found = await options.appAccess(request, team, app, 'developer');
      return { team: found.team, app: found.name };
    } catch (error) {
      if (!(error instanceof ValveError && error.code === 'NOT_FOUND')) throw error;
      const mine = await approverTeams(request, team, app, 'approving');
      if (mine.length === 0) throw error;
      throw forbidden(
        `members of team ${mine.join(', ')} approve changes to ${team}/${app} and read its environments; deploying, promoting, rolling back and syncing take a developer of team ${team}`,
      );
    }
  };

  const envOf = async (request: FastifyRequest<EnvParams>, access: 'read' | 'change') => {
    const { team, app } = request.params;
    if (access === 'change') {
      const found = await changeAccess(request, team, app);
      return { ...found, env: parseInput(environmentName, request.params.env) };
    }
    await readAccess(request, team, app);
    return { team, app, env: parseInput(environmentName, request.params.env) };
  };

  const answer = (reply: FastifyReply, result: ChangeResult) =>
    reply.status(result.status === 'committed' ? 201 : 202).send(result);

  return async function (server: FastifyInstance) {
    server.get<AppParams>('/api/apps/:team/:app/environments', async (request) => {
      const { team, app } = request.params;
      await readAccess(request, team, app);
      return deploy.environments(team, app);
    });

    server.get<EnvParams>('/api/apps/:team/:app/environments/:env', async (request) => {
      const { team, app, env } = await envOf(request, 'read');
      return deploy.environment(team, app, env);
    });

    server.get<EnvParams>('/api/apps/:team/:app/environments/:env/diff', async (request) => {
      const { team, app, env } = await envOf(request, 'read');
      return deploy.diff(team, app, env);
    });

    server.post<EnvParams>('/api/apps/:team/:app/environments/:env/sync', async (request) => {
      const { team, app, env } = await envOf(request, 'change');
      const body = parseInput(syncBody, request.body);
      const principal = await options.principal(request);
      return deploy.sync(team, app, env, principal.username, body);
    });

    server.post<EnvParams>(
      '/api/apps/:team/:app/environments/:env/deploy',
      async (request, reply) => {
        const { team, app, env } = await envOf(request, 'change');
        const body = parseInput(deployBody, request.body);
        const principal = await options.principal(request);
        return answer(reply, await deploy.deploy(team, app, env, body.image, principal.username));
      },
    );

    server.post<AppParams>('/api/apps/:team/:app/promote', async (request, reply) => {
      const { team, app } = await changeAccess(request, request.params.team, request.params.app);
      const body = parseInput(promoteBody, request.body);
      const principal = await options.principal(request);
      return answer(reply, await deploy.promote(team, app, body.from, body.to, principal.username));
    });

    server.post<EnvParams>(
      '/api/apps/:team/:app/environments/:env/rollback',
      async (request, reply) => {
        const { team, app, env } = await envOf(request, 'change');
        const body = parseInput(rollbackBody, request.body);
        const principal = await options.principal(request);
        return answer(reply, await deploy.rollback(team, app, env, body, principal.username));
      },
    );

    server.get<EnvParams & { Querystring: Record<string, string> }>(
      '/api/apps/:team/:app/environments/:env/history',
      async (request) => {
        const { team, app, env } = await envOf(request, 'read');
        const { limit } = parseInput(historyQuery, request.query);
        return deploy.history(team, app, env, limit);
      },
    );

    // Approvers are members of the approving team; they need not be members of the app's team,
    // and see only the approvals their teams decide.
    server.get<AppParams & { Querystring: Record<string, string> }>(
      '/api/apps/:team/:app/approvals',
      async (request) => {
        const { team, app } = request.params;
        const { status } = parseInput(approvalsQuery, request.query);
        if (await canSee(request, team, app)) return deploy.approvals(team, app, { status });
        const mine = await approverTeams(request, team, app, 'any');
        if (mine.length === 0) throw notFound(`app ${team}/${app}`);
        return deploy.approvals(team, app, { status, teams: mine });
      },
    );

    server.get<ApprovalParams>('/api/apps/:team/:app/approvals/:id', async (request) => {
      const { team, app, id } = request.params;
      const approval = await deploy.approval(team, app, id).catch(() => null);
      const principal = await options.principal(request);
      if (
        approval &&
        ((await canSee(request, team, app)) || (await options.isMember(principal, approval.team)))
      )
        return approval;
      throw notFound(`approval ${id}`);
    });

    for (const decision of ['approve', 'reject'] as const) {
      server.post<ApprovalParams>(
        `/api/apps/:team/:app/approvals/:id/${decision}`,
        async (request) => {
          const { team, app, id } = request.params;
          const principal = await options.principal(request);
          const body = parseInput(decisionBody, request.body);
          const approval = await deploy.approval(team, app, id).catch(() => null);
          const approver = approval ? await options.isMember(principal, approval.team) : false;
          // Not an approver: the app's team learns why (403); everyone else sees nothing.
          if (!approval || (!approver && !(await canSee(request, team, app))))
            throw notFound(`approval ${id}`);
          return deploy.decide({
            team,
            app,
            id,
            decision,
            comment: body.comment,
            username: principal.username,
            isMember: (approving) => options.isMember(principal, approving),
          });
        },
      );
    }

    server.get<{ Params: { team: string } }>('/api/teams/:team/targets', async (request) => {
      await options.teamAccess(request, request.params.team, 'viewer');
      return deploy.listTargets(request.params.team);
    });

    server.post<{ Params: { team: string } }>(
      '/api/teams/:team/targets',
      async (request, reply) => {
        await options.teamAccess(request, request.params.team, 'admin');
        const input = parseInput(targetInput, request.body);
        const principal = await options.principal(request);
        return reply
          .status(201)
          .send(await deploy.addTarget(request.params.team, input, principal.username));
      },
    );

    server.delete<{ Params: { team: string; name: string } }>(
      '/api/teams/:team/targets/:name',
      async (request, reply) => {
        await options.teamAccess(request, request.params.team, 'admin');
        await deploy.removeTarget(request.params.team, request.params.name);
        return reply.status(204).send();
      },
    );
  };

  /** Can the caller see the app (a viewer of its team)? False for a 404, throws anything else. */
  async function canSee(request: FastifyRequest, team: string, app: string): Promise<boolean> {
    try {
      await options.appAccess(request, team, app, 'viewer');
      return true;
    } catch (error) {
      if (error instanceof ValveError && error.code === 'NOT_FOUND') return false;
      throw error;
    }
  }

  /**
   * The approving teams of the app the caller is an active member of. `approving`: those that
   * approve now (valve.yaml on main, or a pending request): they read the environments.
   * `any`: also those of any earlier request: they read their approvals.
   */
  async function approverTeams(
    request: FastifyRequest,
    team: string,
    app: string,
    which: 'approving' | 'any',
  ) {
    const principal = await options.principal(request);
    const teams = new Set(await deploy.approvingTeams(team, app));
    if (which === 'any')
      for (const approval of await deploy.approvals(team, app)) teams.add(approval.team);
    const mine: string[] = [];
    for (const approving of teams)
      if (await options.isMember(principal, approving)) mine.push(approving);
    return mine;
  }
}
