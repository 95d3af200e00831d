/** The `valve` command. Each command is declared in its own file under commands/. */
import { Command } from 'commander';
import { CliError } from './client.js';
import { registerApps, registerRuns, registerStatus } from './commands/apps.js';
import { registerAuth } from './commands/auth.js';
import { registerLogs } from './commands/logs.js';
import { registerServer } from './commands/server.js';

const program = new Command('valve')
  .description('Valve: git push to a running, observable service')
  .version('0.1.0');
registerServer(program);
registerAuth(program);
registerApps(program);
registerRuns(program);
registerLogs(program);
registerStatus(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(
    `valve: ${error instanceof CliError || error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
});
