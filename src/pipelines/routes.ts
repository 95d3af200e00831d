import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Role } from '../auth/index.js';
import { notFound } from '../errors.js';
import type { EventBus, RunLogLine } from '../events.js';
import { parseInput } from '../http/errors.js';
import type { RunLogStore } from './logs.js';
import type { PipelineService } from './service.js';

export interface PipelineRoutesOptions {
  pipelines: PipelineService;
  logs: RunLogStore;
  events: EventBus;
  /** The app if the caller may see it with at least `minimum` role; throws 401/404 otherwise. */
  appAccess(
    request: FastifyRequest,
    team: string,
    app: string,
    minimum: Role,
  ): Promise<{ id: string }>;
}

type RunParams = { Params: { team: string; app: string; number: string } };
const runNumber = z.coerce.number().int().positive();
const listQuery = z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) });

export function pipelineRoutes(options: PipelineRoutesOptions) {
  const { pipelines, logs, events } = options;

  const findRun = async (request: FastifyRequest<RunParams>, minimum: Role) => {
    const app = await options.appAccess(request, request.params.team, request.params.app, minimum);
    const number = parseInput(runNumber, request.params.number);
    const run = await pipelines.byNumber(app.id, number);
    if (!run) throw notFound(`run #${number}`);
    return run;
  };

  return async function (app: FastifyInstance) {
    app.get<{ Params: { team: string; app: string } }>(
      '/api/apps/:team/:app/runs',
      async (request) => {
        const record = await options.appAccess(
          request,
          request.params.team,
          request.params.app,
          'viewer',
        );
        const { limit } = parseInput(listQuery, request.query);
        return Promise.all(
          (await pipelines.list(record.id, limit)).map((run) => pipelines.view(run)),
        );
      },
    );

    app.get<RunParams>('/api/apps/:team/:app/runs/:number', async (request) =>
      pipelines.view(await findRun(request, 'viewer')),
    );

    app.post<RunParams>('/api/apps/:team/:app/runs/:number/cancel', async (request, reply) => {
      const run = await findRun(request, 'developer');
      await pipelines.cancel(run.id);
      return reply.status(202).send({ status: 'cancelling' });
    });

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
