import type { Command } from 'commander';
import { ApiClient, parseAppRef, parseRunNumber, runApiPath } from '../client.js';

export function registerCancel(program: Command) {
  program
    .command('cancel')
    .description('cancel a queued or running run (its running steps are stopped)')
    .argument('<team/app>')
    .argument('<run>', 'run number')
    .action(async (ref: string, number: string) => {
      const run = { ...parseAppRef(ref), number: parseRunNumber(number) };
      await ApiClient.fromConfig().request('POST', `${runApiPath(run)}/cancel`);
      console.log(`cancelling run #${run.number} of ${run.team}/${run.app}`);
    });
}
