import type { Command } from 'commander';
import { ApiClient, appApiPath, parseAppRef } from '../client.js';
import type { ChangeResultView } from '../views.js';
import { changeOptions, reportChange, type ChangeOptions } from './deploy.js';

export function registerPromote(program: Command) {
  changeOptions(
    program
      .command('promote')
      .description(
        'move the exact image one environment runs to another (same digest, never rebuilt), rendered with its settings',
      )
      .argument('<team/app>')
      .argument('<from>', 'environment whose image moves, e.g. stage')
      .argument('<to>', 'environment it moves to, e.g. prod'),
  ).action(async (ref: string, from: string, to: string, options: ChangeOptions) => {
    const app = parseAppRef(ref);
    const client = ApiClient.fromConfig();
    const result = await client.request<ChangeResultView>('POST', `${appApiPath(app)}/promote`, {
      from,
      to,
    });
    await reportChange(client, app, result, options);
  });
}
