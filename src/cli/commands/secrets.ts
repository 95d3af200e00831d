import type { Command } from 'commander';
import { ApiClient, appApiPath, CliError, parseAppRef, table } from '../client.js';
import { readSecret, readStdin } from '../prompt.js';
import { ago, type SecretView } from '../views.js';

interface ScopeOptions {
  team?: string;
}

/** Where secrets live: an app's own (`team/app`), or a team's (`--team t`, seen by all its apps). */
interface Scope {
  label: string;
  path: string;
  /** For an app: its team's secrets, which its runs see too. */
  teamPath?: string;
}

const teamSecretsPath = (team: string) => `/api/teams/${team}/secrets`;

/**
 * `<team/app> NAME` or `--team t NAME`: the scope and the secret name. `needsName` says whether
 * a name must follow (set, rm) or must not (list).
 */
function scopeAndName(
  first: string | undefined,
  second: string | undefined,
  options: ScopeOptions,
  needsName: boolean,
): { scope: Scope; name?: string } {
  let target: string | undefined;
  let name: string | undefined;
  if (options.team) {
    if (!/^[a-z0-9-]+$/.test(options.team))
      throw new CliError(`--team: expected a team name, got "${options.team}"`);
    if (second !== undefined || (first?.includes('/') ?? false))
      throw new CliError('give either <team>/<app> or --team <team>, not both');
    name = first;
  } else {
    target = first;
    name = second;
    if (!target) throw new CliError('expected <team>/<app>, or --team <team>');
  }
  if (needsName && !name) throw new CliError('expected the secret NAME');
  if (!needsName && name) throw new CliError(`unexpected argument "${name}"`);
  if (options.team)
    return { scope: { label: `team ${options.team}`, path: teamSecretsPath(options.team) }, name };
  const app = parseAppRef(target!);
  const scope = {
    label: `${app.team}/${app.app}`,
    path: `${appApiPath(app)}/secrets`,
    teamPath: teamSecretsPath(app.team),
  };
  return { scope, name };
}

export function registerSecrets(program: Command) {
  const secrets = program
    .command('secrets')
    .description(
      'secrets for workflows (${{ secrets.NAME }}): names are listed, values never shown',
    );

  secrets
    .command('list')
    .description("an app's secrets (its own and its team's), or a team's with --team")
    .argument('[team/app]')
    .option('--team <team>', "the team's secrets, shared by all its apps")
    .action(async (target: string | undefined, options: ScopeOptions) => {
      const { scope } = scopeAndName(target, undefined, options, false);
      const client = ApiClient.fromConfig();
      const rows = await client.request<SecretView[]>('GET', scope.path);
      if (scope.teamPath) {
        // An app's runs also see its team's secrets; the app's own win on a name clash.
        const own = new Set(rows.map((r) => r.name));
        const shared = await client.request<SecretView[]>('GET', scope.teamPath);
        rows.push(
          ...shared.map((s) => ({
            ...s,
            name: own.has(s.name) ? `${s.name} (overridden)` : s.name,
          })),
        );
      }
      if (rows.length === 0) return console.log(`no secrets for ${scope.label}`);
      console.log(
        table(
          rows.map((s) => ({
            NAME: s.name,
            SCOPE: s.scope,
            UPDATED: ago(s.updatedAt),
            BY: s.updatedBy,
          })),
          ['NAME', 'SCOPE', 'UPDATED', 'BY'],
        ),
      );
    });

  secrets
    .command('set')
    .description(
      'set a secret; the value comes from --value, or standard input (prompted without echo on a terminal)',
    )
    .argument('[team/app]')
    .argument('[name]')
    .option('--team <team>', 'a team secret, shared by all its apps (team admins only)')
    .option('--value <value>', 'the value (visible in shell history and ps: prefer stdin)')
    .action(
      async (
        first: string | undefined,
        second: string | undefined,
        options: ScopeOptions & { value?: string },
      ) => {
        const { scope, name } = scopeAndName(first, second, options, true);
        const value =
          options.value ??
          (process.stdin.isTTY ? await readSecret(`Value for ${name}: `) : await readStdin());
        if (!value) throw new CliError('the value is empty');
        await ApiClient.fromConfig().request('PUT', `${scope.path}/${encodeURIComponent(name!)}`, {
          value,
        });
        console.log(`set secret ${name} for ${scope.label}`);
      },
    );

  secrets
    .command('rm')
    .alias('delete')
    .description('delete a secret')
    .argument('[team/app]')
    .argument('[name]')
    .option('--team <team>', 'a team secret (team admins only)')
    .action(
      async (first: string | undefined, second: string | undefined, options: ScopeOptions) => {
        const { scope, name } = scopeAndName(first, second, options, true);
        await ApiClient.fromConfig().request(
          'DELETE',
          `${scope.path}/${encodeURIComponent(name!)}`,
        );
        console.log(`deleted secret ${name} of ${scope.label}`);
      },
    );
}
