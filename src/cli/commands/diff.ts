import type { Command } from 'commander';
import { ApiClient, parseAppRef, type AppRef } from '../client.js';
import {
  paint,
  shortDigest,
  type DeployEnvironmentView,
  type EnvironmentDiffView,
  type SyncRecordView,
} from '../views.js';
import { environmentPath } from './deploy.js';

const show = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/** Desired (+, green) against live (-, red), resource by resource, field by field. */
export function formatDiff(diff: EnvironmentDiffView): string {
  const lines = [
    `${diff.environment}: ${diff.syncStatus}   desired ${diff.desiredCommit?.slice(0, 7) ?? '-'}, applied ${diff.deployCommit?.slice(0, 7) ?? '-'}`,
  ];
  if (diff.error) lines.push(paint('red', `error: ${diff.error}`));
  for (const drift of diff.drift) lines.push(paint('red', `drift: ${drift}`));
  const byResource = new Map<string, EnvironmentDiffView['items']>();
  for (const item of diff.items) {
    const list = byResource.get(item.resource) ?? [];
    list.push(item);
    byResource.set(item.resource, list);
  }
  for (const [resource, items] of byResource) {
    const where = diff.resources.find((r) => r.resource === resource);
    lines.push('', `${resource}${where ? paint('dim', `  (${where.file}:${where.line})`) : ''}`);
    for (const item of items) {
      if (item.path === '') {
        lines.push(
          item.prune
            ? paint('red', '- live only: a sync with prune deletes it')
            : paint('green', '+ not live yet: a sync creates it'),
        );
        continue;
      }
      lines.push(`  ${item.path}`);
      if (item.live !== null) lines.push(paint('red', `  - ${show(item.live)}`));
      if (item.desired !== null) lines.push(paint('green', `  + ${show(item.desired)}`));
    }
  }
  if (diff.items.length === 0 && !diff.error) lines.push('no differences: live is as desired');
  return lines.join('\n');
}

export function registerDiff(program: Command) {
  program
    .command('diff')
    .description(
      'what a sync would change: desired (deploy repo) against live, per resource and field',
    )
    .argument('<team/app>')
    .argument('<env>')
    .option('--json', 'print the API answer as JSON')
    .action(async (ref: string, env: string, options: { json?: boolean }) => {
      const app = parseAppRef(ref);
      const diff = await ApiClient.fromConfig().request<EnvironmentDiffView>(
        'GET',
        `${environmentPath(app, env)}/diff`,
      );
      console.log(options.json ? JSON.stringify(diff, null, 2) : formatDiff(diff));
    });
}

/** `valve sync`: beside diff, whose output it acts on. */
export function registerSync(program: Command) {
  program
    .command('sync')
    .description(
      'apply the deploy repo to an environment now (needed where automatic sync is off); waits for it',
    )
    .argument('<team/app>')
    .argument('<env>')
    .option('--no-prune', 'leave live resources that the deploy repo no longer has')
    .option('--json', 'print the API answer as JSON')
    .action(async (ref: string, env: string, options: { prune: boolean; json?: boolean }) => {
      const app: AppRef = parseAppRef(ref);
      const result = await ApiClient.fromConfig().request<{
        environment: DeployEnvironmentView;
        sync: SyncRecordView | null;
      }>('POST', `${environmentPath(app, env)}/sync`, { prune: options.prune });
      if (options.json) return console.log(JSON.stringify(result, null, 2));
      const { environment: view, sync } = result;
      if (sync)
        console.log(
          `sync ${sync.status}${sync.message ? `: ${sync.message}` : ''} (${sync.commit.slice(0, 7)})`,
        );
      else console.log('nothing to sync');
      console.log(
        `${view.name}: ${view.syncStatus} ${view.health} ${shortDigest(view.image)} ${view.url ?? ''}`.trimEnd(),
      );
      if (sync?.status === 'failed' || view.syncStatus !== 'Synced') process.exitCode = 1;
    });
}
