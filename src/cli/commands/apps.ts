import type { Command } from 'commander';
import { ApiClient, appApiPath, parseAppRef, table } from '../client.js';
import type { AppView, CommitStatusView, EnvironmentView } from '../views.js';
import { ago, approvalLabel, branchOf, shortDigest, workflowFile } from '../views.js';

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
              APPROVAL: env ? approvalLabel(env) : '',
              'LAST RUN': app.lastRun ? `#${app.lastRun.number} ${app.lastRun.status}` : '',
            }),
          ),
        ),
        ['APP', 'ENV', 'HEALTH', 'VERSION', 'URL', 'APPROVAL', 'LAST RUN'],
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
    .description(
      "an app's last run and its commit's status; environments: health, version, URL, approval, instances",
    )
    .argument('<team/app>')
    .action(async (ref: string) => {
      const appRef = parseAppRef(ref);
      const client = ApiClient.fromConfig();
      const view = await client.request<AppView>('GET', appApiPath(appRef));
      console.log(
        view.access === 'approver'
          ? `${view.team}/${view.name}   (you approve changes to it; its runs are its team's)`
          : `${view.team}/${view.name}   source: ${view.gitUrl}`,
      );
      const last = view.lastRun;
      if (last) {
        console.log(
          `last run: #${last.number} ${last.status} (${workflowFile(last.workflow)} on ${branchOf(last.ref)}, ${last.commit.slice(0, 7)} ${last.commitMessage})`,
        );
        const status = await client.request<CommitStatusView>(
          'GET',
          `${appApiPath(appRef)}/commits/${last.commit}/status`,
        );
        const runs = status.runs
          .map((r) => `${workflowFile(r.workflow)} #${r.number} ${r.status}`)
          .join(', ');
        console.log(
          `commit ${last.commit.slice(0, 7)}: ${status.state}${runs ? ` (${runs})` : ''}`,
        );
      }
      for (const env of view.environments) {
        console.log(`\n${env.name}: ${env.health}   ${env.url ?? ''}`);
        console.log(`  image:  ${env.image ?? '(nothing deployed yet)'}`);
        if (env.sourceCommit)
          console.log(
            `  source: ${env.sourceCommit.slice(0, 12)}   deployed ${ago(env.deployedAt)}`,
          );
        if (env.approval)
          console.log(`  approval: changes wait for a member of team ${env.approval.team}`);
        const waiting = env.pendingApproval;
        if (waiting)
          console.log(
            `  waiting:  ${waiting.summary} (asked by ${waiting.requestedBy}; valve approve ${view.team}/${view.name} --id ${waiting.id})`,
          );
        if (env.message) console.log(`  note:   ${env.message}`);
        for (const i of env.instances)
          console.log(
            `  instance ${i.id}: pid ${i.pid} port ${i.port} ${i.healthy ? 'ready' : 'not ready'}`,
          );
      }
    });
}
