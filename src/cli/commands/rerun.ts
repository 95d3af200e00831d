import type { Command } from 'commander';
import { ApiClient, parseAppRef, parseRunNumber, runApiPath } from '../client.js';
import { followRun, reportEnd } from '../follow.js';
import type { RunView } from '../views.js';

export function registerRerun(program: Command) {
  program
    .command('rerun')
    .description('run a finished run again: same commit, workflow and inputs, as a new run')
    .argument('<team/app>')
    .argument('<run>', 'run number')
    .option(
      '--failed',
      'only the jobs that failed (and those after them); the rest keep their results',
    )
    .option('-f, --follow', 'stream the new run; exit non-zero unless it succeeds')
    .action(
      async (ref: string, number: string, options: { failed?: boolean; follow?: boolean }) => {
        const previous = { ...parseAppRef(ref), number: parseRunNumber(number) };
        const client = ApiClient.fromConfig();
        const run = await client.request<RunView>('POST', `${runApiPath(previous)}/rerun`, {
          failedOnly: options.failed === true,
        });
        console.log(
          `started run #${run.number}: ${options.failed ? 'failed jobs of' : 're-run of'} #${previous.number}`,
        );
        if (!options.follow) return;
        const next = { ...previous, number: run.number };
        reportEnd(next, await followRun(client, next, { jobs: null, progress: true }));
      },
    );
}
