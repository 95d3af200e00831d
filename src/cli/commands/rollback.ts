import type { Command } from 'commander';
import { ApiClient, CliError, parseAppRef } from '../client.js';
import type { ChangeResultView } from '../views.js';
import { changeOptions, environmentPath, reportChange, type ChangeOptions } from './deploy.js';

export function registerRollback(program: Command) {
  changeOptions(
    program
      .command('rollback')
      .description(
        'bring back an earlier deploy of an environment, as a new commit (`valve history` lists them)',
      )
      .argument('<team/app>')
      .argument('<env>')
      .option('--to <commit>', 'the deploy commit to go back to (a prefix will do)')
      .option('--steps <n>', 'go back this many deploys (default 1)'),
  ).action(
    async (ref: string, env: string, options: ChangeOptions & { to?: string; steps?: string }) => {
      if (options.to && options.steps) throw new CliError('give either --to or --steps, not both');
      const steps = options.steps === undefined ? undefined : Number(options.steps);
      if (steps !== undefined && (!Number.isInteger(steps) || steps < 1))
        throw new CliError(`--steps: expected a positive number, got "${options.steps}"`);
      const app = parseAppRef(ref);
      const client = ApiClient.fromConfig();
      const result = await client.request<ChangeResultView>(
        'POST',
        `${environmentPath(app, env)}/rollback`,
        options.to ? { commit: options.to } : { stepsBack: steps ?? 1 },
      );
      await reportChange(client, app, result, options);
    },
  );
}
