import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Principal, Role } from '../auth/index.js';
import { forbidden, notFound } from '../errors.js';
import type { EventBus, RunLogLine } from '../events.js';
import { parseInput } from '../http/errors.js';
import type { RunLogStore } from './logs.js';
import { secretName, secretValue, type SecretStore } from './secrets/index.js';
import type { AppRef, PipelineService } from './service.js';

export interface PipelineRoutesOptions {
  pipelines: PipelineService;
  logs: RunLogStore;
  events: EventBus;
  secrets: SecretStore;
  principal(request: FastifyRequest): Promise<Principal>;
  /** The app if the caller may see it with at least `minimum` role; throws 401/404 otherwise. */
  appAccess(request: FastifyRequest, team: string, app: string, minimum: Role): Promise<AppRef>;
  /** Every app the caller can see. */
  visibleApps(request: FastifyRequest): Promise<AppRef[]>;
  /** Throws unless the caller has at least `minimum` role in the team. */
  teamAccess(request: FastifyRequest, team: string, minimum: Role): Promise<void>;
  /** Is the user an active member of the team? (approvals) */
  isMember(principal: Principal, team: string): Promise<boolean>;
}

type AppParams = { Params: { team: string; app: string } };
type RunParams = { Params: { team: string; app: string; number: string } };
const runNumber = z.coerce.number().int().positive();
const filters = z.object({
  status: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']).optional(),
  event: z.string().max(40).optional(),
  branch: z.string().max(200).optional(),
  actor: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});
const rerunBody = z.object({ failedOnly: z.boolean().default(false) });
const approvalBody = z.object({
  decision: z.enum(['approve', 'reject']),
  comment: z.string().max(2000).optional(),
});
const dispatchBody = z.object({
  workflow: z.string().min(1).max(300),
  ref: z.string().max(300).optional(),
  inputs: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
});
const secretBody = z.object({ value: secretValue });

export function pipelineRoutes(options: PipelineRoutesOptions) {
  const { pipelines, logs, events, secrets } = options;

  const findRun = async (request: FastifyRequest<RunParams>, minimum: Role) => {
    const app = await options.appAccess(request, request.params.team, request.params.app, minimum);
    const number = parseInput(runNumber, request.params.number);
    const run = await pipelines.byNumber(app.id, number);
    if (!run) throw notFound(`run #${number}`);
    return run;
  };

  return async function (app: FastifyInstance) {
    app.get('/api/runs', async (request) => {
      const query = parseInput(
        filters.extend({ team: z.string().optional(), app: z.string().optional() }),
        request.query,
      );
      const apps = (await options.visibleApps(request)).filter(
        (a) => (!query.team || a.team === query.team) && (!query.app || a.name === query.app),
      );
      return Promise.all(
        (
          await pipelines.list(
            apps.map((a) => a.id),
            query,
          )
        ).map((run) => pipelines.view(run)),
      );
    });

    app.get<AppParams>('/api/apps/:team/:app/runs', async (request) => {
      const record = await options.appAccess(
        request,
        request.params.team,
        request.params.app,
        'viewer',
      );
      const query = parseInput(filters, request.query);
      return Promise.all(
        (await pipelines.list([record.id], query)).map((run) => pipelines.view(run)),
      );
    });

    app.get<RunParams>('/api/apps/:team/:app/runs/:number', async (request) =>
      pipelines.view(await findRun(request, 'viewer')),
    );

    app.post<RunParams>('/api/apps/:team/:app/runs/:number/cancel', async (request, reply) => {
      const run = await findRun(request, 'developer');
      await pipelines.cancel(run.id);
      return reply.status(202).send({ status: 'cancelling' });
    });

    app.post<RunParams>('/api/apps/:team/:app/runs/:number/rerun', async (request, reply) => {
      const run = await findRun(request, 'developer');
      const body = parseInput(rerunBody, request.body);
      const principal = await options.principal(request);
      const created = await pipelines.rerun(run.id, {
        failedOnly: body.failedOnly,
        actor: principal.username,
      });
      return reply.status(201).send(await pipelines.view(created));
    });

    // Approvers are members of the approving team; they need not be members of the app's team.
    app.post<{ Params: { team: string; app: string; number: string; jobKey: string } }>(
      '/api/apps/:team/:app/runs/:number/jobs/:jobKey/approval',
      async (request) => {
        const principal = await options.principal(request);
        const body = parseInput(approvalBody, request.body);
        const number = parseInput(runNumber, request.params.number);
        const found = await pipelines.approvalOf(
          request.params.team,
          request.params.app,
          number,
          request.params.jobKey,
        );
        if (!found) throw notFound(`approval for job ${request.params.jobKey} of run #${number}`);
        const { run } = found;
        if (!(await options.isMember(principal, found.team))) {
          // Not an approver: others in the app's team learn why; everyone else sees nothing.
          await options.appAccess(request, request.params.team, request.params.app, 'viewer');
          throw forbidden(
            `only members of team ${found.team} can approve deployments to ${found.environment}`,
          );
        }
        await pipelines.decideApproval(run, {
          jobKey: request.params.jobKey,
          decision: body.decision,
          comment: body.comment,
          username: principal.username,
          isMember: (team) => options.isMember(principal, team),
        });
        return pipelines.view((await pipelines.get(run.id))!);
      },
    );

    app.get<AppParams & { Querystring: { ref?: string } }>(
      '/api/apps/:team/:app/workflows',
      async (request) => {
        const record = await options.appAccess(
          request,
          request.params.team,
          request.params.app,
          'viewer',
        );
        return pipelines.describeWorkflows(record, request.query.ref);
      },
    );

    app.post<AppParams>('/api/apps/:team/:app/dispatch', async (request, reply) => {
      const record = await options.appAccess(
        request,
        request.params.team,
        request.params.app,
        'developer',
      );
      const body = parseInput(dispatchBody, request.body);
      const principal = await options.principal(request);
      const run = await pipelines.dispatch(record, { ...body, actor: principal.username });
      return reply.status(201).send(await pipelines.view(run));
    });

    app.get<AppParams & { Params: { sha: string } }>(
      '/api/apps/:team/:app/commits/:sha/status',
      async (request) => {
        const record = await options.appAccess(
          request,
          request.params.team,
          request.params.app,
          'viewer',
        );
        const sha = parseInput(
          z.string().regex(/^[0-9a-f]{7,40}$/, 'expected a commit sha'),
          (request.params as { sha: string }).sha,
        );
        return pipelines.commitStatus(record.id, sha);
      },
    );

    // Secrets: values go in, never out.
    app.get<{ Params: { team: string } }>('/api/teams/:team/secrets', async (request) => {
      await options.teamAccess(request, request.params.team, 'viewer');
      return secrets.list({ team: request.params.team, app: null });
    });
    app.put<{ Params: { team: string; name: string } }>(
      '/api/teams/:team/secrets/:name',
      async (request, reply) => {
        await options.teamAccess(request, request.params.team, 'admin');
        const name = parseInput(secretName, request.params.name);
        const { value } = parseInput(secretBody, request.body);
        await secrets.set(
          { team: request.params.team, app: null },
          name,
          value,
          (await options.principal(request)).username,
        );
        return reply.status(204).send();
      },
    );
    app.delete<{ Params: { team: string; name: string } }>(
      '/api/teams/:team/secrets/:name',
      async (request, reply) => {
        await options.teamAccess(request, request.params.team, 'admin');
        await secrets.remove({ team: request.params.team, app: null }, request.params.name);
        return reply.status(204).send();
      },
    );
    app.get<AppParams>('/api/apps/:team/:app/secrets', async (request) => {
      const record = await options.appAccess(
        request,
        request.params.team,
        request.params.app,
        'viewer',
      );
      return secrets.list({ team: record.team, app: record.name });
    });
    app.put<{ Params: { team: string; app: string; name: string } }>(
      '/api/apps/:team/:app/secrets/:name',
      async (request, reply) => {
        const record = await options.appAccess(
          request,
          request.params.team,
          request.params.app,
          'developer',
        );
        const name = parseInput(secretName, request.params.name);
        const { value } = parseInput(secretBody, request.body);
        await secrets.set(
          { team: record.team, app: record.name },
          name,
          value,
          (await options.principal(request)).username,
        );
        return reply.status(204).send();
      },
    );
    app.delete<{ Params: { team: string; app: string; name: string } }>(
      '/api/apps/:team/:app/secrets/:name',
      async (request, reply) => {
        const record = await options.appAccess(
          request,
          request.params.team,
          request.params.app,
          'developer',
        );
        await secrets.remove({ team: record.team, app: record.name }, request.params.name);
        return reply.status(204).send();
      },
    );

    app.get<RunParams & { Querystring: { follow?: string } }>(
      '/api/apps/:team/:app/runs/:number/logs',
      async (request, reply) => {
        const run = await findRun(request, 'viewer');
        if (request.query.follow !== '1' && request.query.follow !== 'true')
          return logs.read(run.id);

        // Server-Sent Events: every line so far, then each new one, then `end` once the run is done.
        reply.hijack();
        const raw = reply.raw;
        raw.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        let last = 0;
        const send = (line: RunLogLine) => {
          if (line.n <= last) return;
          last = line.n;
          raw.write(`id: ${line.n}\nevent: line\ndata: ${JSON.stringify(line)}\n\n`);
        };
        // Subscribe before reading the file so no line falls between the two.
        const buffered: RunLogLine[] = [];
        let replaying = true;
        const offLog = events.on('run.log', ({ runId, line }) => {
          if (runId !== run.id) return;
          if (replaying) buffered.push(line);
          else send(line);
        });
        const finishIfDone = async () => {
          const current = await pipelines.get(run.id);
          if (current && ['succeeded', 'failed', 'cancelled'].includes(current.status)) {
            for (const line of logs.read(run.id)) send(line);
            raw.write(`event: end\ndata: ${JSON.stringify({ status: current.status })}\n\n`);
            close();
          }
        };
        const offRun = events.on('run.updated', ({ runId }) => {
          if (runId === run.id) void finishIfDone();
        });
        const heartbeat = setInterval(() => raw.write(': keep-alive\n\n'), 15_000);
        const close = () => {
          offLog();
          offRun();
          clearInterval(heartbeat);
          raw.end();
        };
        request.raw.on('close', close);
        const lastEventId = Number(request.headers['last-event-id'] ?? 0);
        last = Number.isFinite(lastEventId) ? lastEventId : 0;
        for (const line of logs.read(run.id)) send(line);
        replaying = false;
        for (const line of buffered) send(line);
        await finishIfDone();
      },
    );
  };
}
