import type { Command } from 'commander';
import { ApiClient, CliError, parseAppRef, table } from '../client.js';
import {
  ago,
  duration,
  shortDigest,
  type DeployRecordView,
  type SyncRecordView,
} from '../views.js';
import { environmentPath } from './deploy.js';

const short = (sha: string | null) => (sha ? sha.slice(0, 7) : '');

export function registerHistory(program: Command) {
  program
    .command('history')
    .description(
      "an environment's deploys, newest first (commit, image, source, author); --syncs: the reconciler's syncs",
    )
    .argument('<team/app>')
    .argument('<env>')
    .option('--syncs', 'the syncs (what was applied, when, by what) instead of the deploys')
    .option('-n, --limit <n>', 'how many', '20')
    .option('--json', 'print the API answer as JSON')
    .action(
      async (
        ref: string,
        env: string,
        options: { syncs?: boolean; limit: string; json?: boolean },
      ) => {
        const limit = Number(options.limit);
        if (!Number.isInteger(limit) || limit < 1)
          throw new CliError(`--limit: expected a positive number, got "${options.limit}"`);
        const app = parseAppRef(ref);
        const history = await ApiClient.fromConfig().request<{
          deploys: DeployRecordView[];
          syncs: SyncRecordView[];
        }>('GET', `${environmentPath(app, env)}/history?limit=${limit}`);
        if (options.json) return console.log(JSON.stringify(history, null, 2));
        if (options.syncs) {
          if (history.syncs.length === 0) return console.log(`no syncs of ${env} yet`);
          return console.log(
            table(
              history.syncs.map((s) => ({
                WHEN: ago(s.startedAt),
                STATUS: s.status,
                TRIGGER: s.trigger ?? '',
                BY: s.actor ?? '',
                COMMIT: short(s.commit),
                IMAGE: shortDigest(s.image),
                TOOK: s.finishedAt ? duration(s.startedAt, s.finishedAt) : '',
                MESSAGE: (s.message ?? '').split('\n')[0]!.slice(0, 80),
              })),
              ['WHEN', 'STATUS', 'TRIGGER', 'BY', 'COMMIT', 'IMAGE', 'TOOK', 'MESSAGE'],
            ),
          );
        }
        if (history.deploys.length === 0) return console.log(`nothing deployed to ${env} yet`);
        console.log(
          table(
            history.deploys.map((d) => ({
              ' ': d.live ? '*' : '',
              COMMIT: short(d.commit),
              WHEN: ago(d.date),
              KIND: d.kind,
              IMAGE: shortDigest(d.image),
              SOURCE: short(d.sourceCommit),
              BY: d.approvedBy ? `${d.author} (approved by ${d.approvedBy})` : d.author,
              NOTE: d.promotedFrom
                ? `from ${d.promotedFrom.environment} ${short(d.promotedFrom.commit)}`
                : d.rolledBackTo
                  ? `back to ${short(d.rolledBackTo)}`
                  : '',
            })),
            [' ', 'COMMIT', 'WHEN', 'KIND', 'IMAGE', 'SOURCE', 'BY', 'NOTE'],
          ),
        );
      },
    );
}
