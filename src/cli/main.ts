/** The `valve` command. Each command is declared in its own file under commands/. */
import { Command } from 'commander';
import { CliError } from './client.js';
import { registerApps, registerStatus } from './commands/apps.js';
import { registerApprove } from './commands/approve.js';
import { registerAuth } from './commands/auth.js';
import { registerCancel } from './commands/cancel.js';
import { registerDeploy } from './commands/deploy.js';
import { registerDiff, registerSync } from './commands/diff.js';
import { registerHistory } from './commands/history.js';
import { registerImages } from './commands/images.js';
import { registerImagesImport } from './commands/images-import.js';
import { registerLogs } from './commands/logs.js';
import { registerPromote } from './commands/promote.js';
import { registerRegistry } from './commands/registry.js';
import { registerRerun } from './commands/rerun.js';
import { registerRollback } from './commands/rollback.js';
import { registerRun } from './commands/run.js';
import { registerRuns } from './commands/runs.js';
import { registerSecrets } from './commands/secrets.js';
import { registerServer } from './commands/server.js';

const program = new Command('valve')
  .description('Valve: git push to a running, observable service')
  .version('0.1.0');
registerServer(program);
registerAuth(program);
registerApps(program);
registerStatus(program);
registerRuns(program);
registerRun(program);
registerLogs(program);
registerRerun(program);
registerCancel(program);
registerApprove(program);
registerDeploy(program);
registerPromote(program);
registerRollback(program);
registerDiff(program);
registerSync(program);
registerHistory(program);
registerSecrets(program);
registerRegistry(program);
registerImages(program);
registerImagesImport(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(
    `valve: ${error instanceof CliError || error instanceof Error ? error.message : String(error)}`,
  );
  process.exit(1);
});
