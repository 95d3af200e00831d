import type { Command } from 'commander';
import { ApiClient, parseAppRef, table } from '../client.js';
import type { AppView, EnvironmentView, RunView } from '../views.js';
import { ago, shortDigest } from '../views.js';

export function registerApps(program: Command) {
  const apps = program.command('apps').description('list your apps, or create one');
  apps.action(async () => {
    const list = await ApiClient.fromConfig().request<AppView[]>('GET', '/api/apps');
    if (list.length === 0) return console.log('no apps yet: valve apps create <team>/<name>');
    console.log(
      table(
        list.flatMap((app) =>
          (app.environments.length ? app.environments : [null]).map(
            (env: EnvironmentView | null) => ({
              APP: `${app.team}/${app.name}`,
              ENV: env?.name ?? '',
              HEALTH: env?.health ?? '',
              VERSION: shortDigest(env?.image ?? null),
              URL: env?.url ?? '',
              'LAST RUN': app.lastRun ? `#${app.lastRun.number} ${app.lastRun.status}` : '',
            }),
          ),
        ),
        ['APP', 'ENV', 'HEALTH', 'VERSION', 'URL', 'LAST RUN'],
      ),
    );
  });
  apps
    .command('create')
    .description('create an app from a template: its source repo and its deploy repo')
    .argument('<team/app>', 'team and name of the new app')
    .option('--template <name>', 'template to start from', 'node-http')
    .action(async (ref: string, options: { template: string }) => {
      const { team, app } = parseAppRef(ref);
      const created = await ApiClient.fromConfig().request<AppView>('POST', '/api/apps', {
        team,
        name: app,
        template: options.template,
      });
      console.log(`created ${created.team}/${created.name} from ${created.template}`);
      console.log(`  clone:  git clone ${created.gitUrl}`);
      console.log(`  deploy repo: ${created.deployGitUrl}`);
      console.log(`  image:  ${created.image}`);
    });
}

export function registerStatus(program: Command) {
  program
    .command('status')
    .description("an app's environments: health, version, URL, instances")
    .argument('<team/app>')
    .action(async (ref: string) => {
      const { team, app } = parseAppRef(ref);
      const view = await ApiClient.fromConfig().request<AppView>('GET', `/api/apps/${team}/${app}`);
      console.log(`${view.team}/${view.name}   source: ${view.gitUrl}`);
      if (view.lastRun)
        console.log(
          `last run: #${view.lastRun.number} ${view.lastRun.status} (${view.lastRun.commit.slice(0, 7)} ${view.lastRun.commitMessage})`,
        );
      for (const env of view.environments) {
        console.log(`\n${env.name}: ${env.health}   ${env.url ?? ''}`);
        console.log(`  image:  ${env.image ?? '(nothing deployed yet)'}`);
        if (env.sourceCommit)
          console.log(
            `  source: ${env.sourceCommit.slice(0, 12)}   deployed ${ago(env.deployedAt)}`,
          );
        if (env.message) console.log(`  note:   ${env.message}`);
        for (const i of env.instances)
          console.log(
            `  instance ${i.id}: pid ${i.pid} port ${i.port} ${i.healthy ? 'ready' : 'not ready'}`,
          );
      }
    });
}

export function registerRuns(program: Command) {
  program
    .command('runs')
    .description("an app's pipeline runs, newest first")
    .argument('<team/app>')
    .option('-n, --limit <n>', 'how many', '20')
    .action(async (ref: string, options: { limit: string }) => {
      const { team, app } = parseAppRef(ref);
      const runs = await ApiClient.fromConfig().request<RunView[]>(
        'GET',
        `/api/apps/${team}/${app}/runs?limit=${Number(options.limit)}`,
      );
      console.log(
        table(
          runs.map((r) => ({
            RUN: `#${r.number}`,
            STATUS: r.status,
            COMMIT: r.commit.slice(0, 7),
            MESSAGE: r.commitMessage.slice(0, 50),
            BY: r.actor,
            STARTED: ago(r.startedAt ?? r.createdAt),
            DURATION:
              r.startedAt && r.finishedAt
                ? `${((Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000).toFixed(1)}s`
                : '',
          })),
          ['RUN', 'STATUS', 'COMMIT', 'MESSAGE', 'BY', 'STARTED', 'DURATION'],
        ),
      );
    });
}
