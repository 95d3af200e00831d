import type { Command } from 'commander';
import { ApiClient, appApiPath, CliError, parseAppRef, type AppRef } from '../client.js';
import {
  shortDigest,
  type ChangeResultView,
  type DeployApprovalView,
  type DeployEnvironmentView,
} from '../views.js';

export interface ChangeOptions {
  wait: boolean;
  json?: boolean;
  timeout: string;
}

export const environmentPath = (app: AppRef, env: string) =>
  `${appApiPath(app)}/environments/${encodeURIComponent(env)}`;

/** Options every command that changes an environment has. */
export function changeOptions(command: Command): Command {
  return command
    .option('--no-wait', 'return once committed; do not wait until the environment runs it')
    .option('--timeout <seconds>', 'how long to wait for the environment', '300')
    .option('--json', 'print the API answer (and the environment once it runs it) as JSON');
}

export function describeApproval(app: AppRef, approval: DeployApprovalView): string {
  return (
    `waiting for approval by a member of team ${approval.team} (until ${approval.expiresAt}):\n` +
    `  ${approval.summary}\n` +
    `  approve: valve approve ${app.team}/${app.app} --id ${approval.id}`
  );
}

/** After a deploy, promotion or rollback: the pending approval, or wait until it runs. */
export async function reportChange(
  client: ApiClient,
  app: AppRef,
  result: ChangeResultView,
  options: ChangeOptions,
): Promise<void> {
  if (result.status === 'pending') {
    if (options.json) console.log(JSON.stringify(result, null, 2));
    else console.log(describeApproval(app, result.approval));
    return;
  }
  if (!options.json)
    console.error(`deploy repo: committed ${result.commit.slice(0, 12)} for ${result.environment}`);
  if (!options.wait) {
    if (options.json) console.log(JSON.stringify(result, null, 2));
    return;
  }
  const timeout = Number(options.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0)
    throw new CliError(`--timeout: expected seconds, got "${options.timeout}"`);
  const env = await waitForEnvironment(client, app, result.environment, result.commit, timeout);
  if (options.json) return console.log(JSON.stringify({ ...result, environment: env }, null, 2));
  if (env.deployCommit !== result.commit) return; // syncs manually: said so on stderr
  console.log(
    `${env.name} runs ${shortDigest(env.image)} (${env.health})${env.url ? ` at ${env.url}` : ''}`,
  );
}

/**
 * Polls the environment until it runs `commit`, printing each change of state on stderr.
 * Throws with the reconciler's message when the sync failed; returns at once for an
 * environment that syncs manually.
 */
export async function waitForEnvironment(
  client: ApiClient,
  app: AppRef,
  name: string,
  commit: string,
  timeoutSeconds: number,
): Promise<DeployEnvironmentView> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let said = '';
  for (;;) {
    const env = await client.request<DeployEnvironmentView>('GET', environmentPath(app, name));
    const state = `${env.syncStatus} ${env.health}${env.message ? `: ${env.message}` : ''}`;
    if (state !== said) console.error(`${name}: ${(said = state)}`);
    const last = env.lastSync;
    if (env.deployCommit === commit && env.syncStatus === 'Synced') return env;
    if (env.desiredCommit === commit) {
      if (last?.commit === commit && last.status === 'failed')
        throw new CliError(`${name}: the sync of ${commit.slice(0, 7)} failed: ${last.message}`);
      if (env.syncStatus === 'Unknown' && env.message)
        throw new CliError(`${name}: ${env.message}`);
      if (env.syncStatus === 'OutOfSync' && !env.sync.automated) {
        console.error(
          `${name} syncs manually: see \`valve diff ${app.team}/${app.app} ${name}\`, then \`valve sync ${app.team}/${app.app} ${name}\``,
        );
        return env;
      }
    }
    if (Date.now() > deadline)
      throw new CliError(`${name} did not run ${commit.slice(0, 7)} within ${timeoutSeconds} s`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

export function registerDeploy(program: Command) {
  changeOptions(
    program
      .command('deploy')
      .description(
        'deploy an image of the registry to an environment: one commit on the deploy repo (or a pending approval)',
      )
      .argument('<team/app>')
      .argument('<env>', 'environment, e.g. dev')
      .requiredOption(
        '-i, --image <image>',
        'a digest (sha256:...), a tag, or <repo>:<tag> / <repo>@<digest> of the team',
      ),
  ).action(async (ref: string, env: string, options: ChangeOptions & { image: string }) => {
    const app = parseAppRef(ref);
    const client = ApiClient.fromConfig();
    const result = await client.request<ChangeResultView>(
      'POST',
      `${environmentPath(app, env)}/deploy`,
      { image: options.image },
    );
    await reportChange(client, app, result, options);
  });
}
