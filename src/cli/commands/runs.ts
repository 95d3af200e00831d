import type { Command } from 'commander';
import { ApiClient, appApiPath, CliError, parseAppRef, table } from '../client.js';
import type { RunView } from '../views.js';
import { ago, branchOf, duration, workflowFile } from '../views.js';

interface RunsOptions {
  all?: boolean;
  status?: string;
  branch?: string;
  event?: string;
  actor?: string;
  limit: string;
}

export function registerRuns(program: Command) {
  program
    .command('runs')
    .description('pipeline runs, newest first: of one app, or with --all of every app you can see')
    .argument('[team/app]')
    .option('--all', 'runs of all your apps')
    .option('--status <status>', 'queued, running, succeeded, failed or cancelled')
    .option('--branch <branch>', 'only runs of this branch')
    .option('--event <event>', 'push, workflow_dispatch, schedule, webhook or rerun')
    .option('--actor <user>', 'only runs started by this user')
    .option('-n, --limit <n>', 'how many', '20')
    .action(async (ref: string | undefined, options: RunsOptions) => {
      if (!ref && !options.all) throw new CliError('expected <team>/<app>, or --all');
      if (ref && options.all) throw new CliError('give either <team>/<app> or --all, not both');
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new CliError(`--limit: expected a positive number, got "${options.limit}"`);
      const query = new URLSearchParams({ limit: String(limit) });
      for (const name of ['status', 'branch', 'event', 'actor'] as const) {
        const value = options[name];
        if (value) query.set(name, value);
      }
      const path = ref ? `${appApiPath(parseAppRef(ref))}/runs` : '/api/runs';
      const runs = await ApiClient.fromConfig().request<RunView[]>('GET', `${path}?${query}`);
      if (runs.length === 0) return console.log('no runs match');
      const columns = [
        'RUN',
        ...(options.all ? ['APP'] : []),
        'STATUS',
        'WORKFLOW',
        'EVENT',
        'BRANCH',
        'COMMIT',
        'MESSAGE',
        'BY',
        'STARTED',
        'DURATION',
      ];
      console.log(
        table(
          runs.map((r) => ({
            RUN: `#${r.number}`,
            APP: `${r.team}/${r.app}`,
            STATUS: r.status,
            WORKFLOW: workflowFile(r.workflow),
            EVENT: r.rerunOf ? `${r.event} of #${r.rerunOf}` : r.event,
            BRANCH: branchOf(r.ref),
            COMMIT: r.commit.slice(0, 7),
            MESSAGE: r.commitMessage.slice(0, 40),
            BY: r.actor,
            STARTED: ago(r.startedAt ?? r.createdAt),
            DURATION: r.finishedAt ? duration(r.startedAt, r.finishedAt) : '',
          })),
          columns,
        ),
      );
    });
}
