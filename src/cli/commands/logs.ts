import type { Command } from 'commander';
import type { RunLogLine } from '../../events.js';
import { ApiClient, CliError, parseAppRef } from '../client.js';
import type { RunView } from '../views.js';

export function registerLogs(program: Command) {
  program
    .command('logs')
    .description("a run's log (the newest run unless a number is given); -f follows it live")
    .argument('<team/app>')
    .argument('[run]', 'run number')
    .option('-f, --follow', 'stream new lines until the run finishes')
    .action(async (ref: string, number: string | undefined, options: { follow?: boolean }) => {
      const { team, app } = parseAppRef(ref);
      const client = ApiClient.fromConfig();
      let runNumber = number === undefined ? undefined : Number(number);
      if (runNumber === undefined) {
        const [latest] = await client.request<RunView[]>(
          'GET',
          `/api/apps/${team}/${app}/runs?limit=1`,
        );
        if (!latest) throw new CliError(`${team}/${app} has no runs yet`);
        runNumber = latest.number;
      }
      const path = `/api/apps/${team}/${app}/runs/${runNumber}/logs`;
      const print = (line: RunLogLine) =>
        console.log(`${String(line.n).padStart(5)}  ${line.ts.slice(11, 23)}  ${line.text}`);
      if (!options.follow) {
        for (const line of await client.request<RunLogLine[]>('GET', path)) print(line);
        return;
      }
      let status = '';
      await client.events(`${path}?follow=1`, (event, data) => {
        if (event === 'line') print(JSON.parse(data) as RunLogLine);
        if (event === 'end') status = (JSON.parse(data) as { status: string }).status;
      });
      if (status && status !== 'succeeded') process.exitCode = 1;
    });
}
