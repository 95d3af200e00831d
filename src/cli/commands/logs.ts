import type { Command } from 'commander';
import type { RunLogLine } from '../../events.js';
import {
  ApiClient,
  appApiPath,
  CliError,
  parseAppRef,
  parseRunNumber,
  runApiPath,
} from '../client.js';
import { followRun, formatLogLine, lineFilter, reportEnd, selectJobs } from '../follow.js';
import type { RunView } from '../views.js';

export function registerLogs(program: Command) {
  program
    .command('logs')
    .description("a run's log (the newest run unless a number is given); -f follows it live")
    .argument('<team/app>')
    .argument('[run]', 'run number')
    .option('-f, --follow', 'stream new lines until the run finishes')
    .option('-j, --job <key>', 'only this job\'s lines: a job key ("test (node 20)") or job id')
    .action(
      async (
        ref: string,
        number: string | undefined,
        options: { follow?: boolean; job?: string },
      ) => {
        const app = parseAppRef(ref);
        const client = ApiClient.fromConfig();
        let run: RunView | undefined;
        if (number === undefined) {
          [run] = await client.request<RunView[]>('GET', `${appApiPath(app)}/runs?limit=1`);
          if (!run) throw new CliError(`${app.team}/${app.app} has no runs yet`);
        } else if (options.job) {
          run = await client.request<RunView>(
            'GET',
            runApiPath({ ...app, number: parseRunNumber(number) }),
          );
        }
        const runRef = { ...app, number: run?.number ?? parseRunNumber(number ?? '') };
        const jobs = options.job && run ? selectJobs(run, options.job) : null;
        if (!options.follow) {
          const lines = await client.request<RunLogLine[]>('GET', `${runApiPath(runRef)}/logs`);
          for (const line of lines.filter(lineFilter(jobs))) console.log(formatLogLine(line));
          return;
        }
        reportEnd(runRef, await followRun(client, runRef, { jobs, progress: false }));
      },
    );
}
