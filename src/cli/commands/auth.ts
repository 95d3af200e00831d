import { hostname } from 'node:os';
import type { Command } from 'commander';
import { ApiClient, CliError, saveCliConfig } from '../client.js';
import { readSecret } from '../prompt.js';

interface LoginOptions {
  server: string;
  username: string;
  password?: string;
  passwordStdin?: boolean;
  team?: string;
}

async function passwordFrom(options: LoginOptions): Promise<string> {
  if (options.password) return options.password;
  if (process.env.VALVE_PASSWORD) return process.env.VALVE_PASSWORD;
  if (options.passwordStdin) return (await readSecret(null)).trim();
  return readSecret('Password: ');
}

async function loginAndSave(client: ApiClient, username: string, password: string) {
  const result = await client.request<{ user: { username: string }; token: string }>(
    'POST',
    '/api/login',
    {
      username,
      password,
      tokenName: `valve cli on ${hostname()}`,
    },
  );
  saveCliConfig({ server: client.server, username: result.user.username, token: result.token });
  return result;
}

export function registerAuth(program: Command) {
  program
    .command('signup')
    .description('create a user (and its team, or ask to join an existing one), then log in')
    .requiredOption('--server <url>', 'Valve server URL')
    .requiredOption('--username <name>', 'user name')
    .requiredOption('--team <team>', 'team to create or join')
    .option('--password <password>', 'password (or env VALVE_PASSWORD, or prompted)')
    .option('--password-stdin', 'read the password from standard input')
    .action(async (options: LoginOptions) => {
      const client = new ApiClient(options.server);
      const password = await passwordFrom(options);
      const result = await client.request<{
        membership: { team: string; role: string; status: string };
      }>('POST', '/api/signup', {
        username: options.username,
        password,
        team: options.team,
      });
      await loginAndSave(client, options.username, password);
      const m = result.membership;
      console.log(
        `signed up ${options.username}: ${m.role} of team ${m.team}${m.status === 'pending' ? ' (pending until a team admin approves)' : ''}`,
      );
    });

  program
    .command('login')
    .description('log in and save an API token for the CLI')
    .requiredOption('--server <url>', 'Valve server URL')
    .requiredOption('--username <name>', 'user name')
    .option('--password <password>', 'password (or env VALVE_PASSWORD, or prompted)')
    .option('--password-stdin', 'read the password from standard input')
    .action(async (options: LoginOptions) => {
      const result = await loginAndSave(
        new ApiClient(options.server),
        options.username,
        await passwordFrom(options),
      );
      console.log(`logged in to ${options.server} as ${result.user.username}`);
    });

  program
    .command('token')
    .description('create an API token (for git and the registry)')
    .argument('<name>', 'what the token is for')
    .action(async (name: string) => {
      const result = await ApiClient.fromConfig().request<{ token: string }>(
        'POST',
        '/api/tokens',
        { name },
      );
      if (!result.token) throw new CliError('no token returned');
      console.log(result.token);
    });

  program
    .command('whoami')
    .description('show the logged-in user and teams')
    .action(async () => {
      const me = await ApiClient.fromConfig().request<{
        username: string;
        teams: { team: string; role: string; status: string }[];
      }>('GET', '/api/me');
      console.log(me.username);
      for (const t of me.teams)
        console.log(`  ${t.team}: ${t.role}${t.status === 'pending' ? ' (pending)' : ''}`);
    });
}
