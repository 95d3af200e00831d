import type { Command } from 'commander';
import { ApiClient, appApiPath, CliError, parseAppRef, type AppRef } from '../client.js';
import { followRun, reportEnd } from '../follow.js';
import type { RunView, WorkflowView } from '../views.js';

interface RunOptions {
  workflow?: string;
  ref?: string;
  input: string[];
  follow?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

const dispatchable = (workflow: WorkflowView) =>
  !workflow.error && workflow.triggers.some((t) => /^workflow_?dispatch$/i.test(t));

/** The workflow to start: the one named, or the only one that can be started by hand. */
async function chooseWorkflow(
  client: ApiClient,
  app: AppRef,
  options: RunOptions,
): Promise<WorkflowView | undefined> {
  const query = options.ref ? `?ref=${encodeURIComponent(options.ref)}` : '';
  const workflows = await client.request<WorkflowView[]>(
    'GET',
    `${appApiPath(app)}/workflows${query}`,
  );
  if (options.workflow) {
    const name = options.workflow;
    // Unknown here is left to the server, which says so in its own words.
    return workflows.find((w) => w.file === name || w.file.endsWith(`/${name}`));
  }
  const candidates = workflows.filter(dispatchable);
  if (candidates.length === 1) return candidates[0];
  throw new CliError(
    candidates.length === 0
      ? `${app.team}/${app.app} has no workflow with a workflow_dispatch trigger`
      : `which workflow? --workflow one of: ${candidates.map((w) => w.file).join(', ')}`,
  );
}

/**
 * `-i name=value` pairs as the workflow declares them: numbers and booleans typed, names it
 * does not declare refused before anything starts.
 */
export function dispatchInputs(
  pairs: string[],
  workflow: WorkflowView | undefined,
): Record<string, string | number | boolean> {
  const inputs: Record<string, string | number | boolean> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new CliError(`-i: expected name=value, got "${pair}"`);
    const name = pair.slice(0, at);
    const value = pair.slice(at + 1);
    const declared = workflow?.inputs?.[name];
    if (workflow && !declared) {
      const known = Object.keys(workflow.inputs ?? {});
      throw new CliError(
        `-i ${name}: ${workflow.file} has no input "${name}"${known.length ? `; its inputs: ${known.join(', ')}` : ''}`,
      );
    }
    if (declared?.type === 'number' && value.trim() !== '' && Number.isFinite(Number(value)))
      inputs[name] = Number(value);
    else if (declared?.type === 'boolean' && (value === 'true' || value === 'false'))
      inputs[name] = value === 'true';
    else inputs[name] = value;
  }
  return inputs;
}

export function registerRun(program: Command) {
  program
    .command('run')
    .description('start a workflow by hand (workflow_dispatch); -f follows it until it finishes')
    .argument('<team/app>')
    .option(
      '-w, --workflow <file>',
      'workflow file, e.g. deploy.yml (needed if several can be run)',
    )
    .option('--ref <ref>', 'branch or tag to run at (default: the default branch)')
    .option('-i, --input <name=value>', 'a workflow input; repeat for more', collect, [])
    .option('-f, --follow', 'stream the log and progress; exit non-zero unless the run succeeds')
    .action(async (ref: string, options: RunOptions) => {
      const app = parseAppRef(ref);
      const client = ApiClient.fromConfig();
      const workflow = await chooseWorkflow(client, app, options);
      const run = await client.request<RunView>('POST', `${appApiPath(app)}/dispatch`, {
        workflow: workflow?.file ?? options.workflow,
        ...(options.ref ? { ref: options.ref } : {}),
        inputs: dispatchInputs(options.input, workflow),
      });
      console.log(
        `started run #${run.number} of ${app.team}/${app.app}: ${run.workflow} at ${run.ref} (${run.commit.slice(0, 7)})`,
      );
      console.log(`  ${new URL(`/apps/${app.team}/${app.app}/runs/${run.number}`, client.server)}`);
      if (!options.follow) return;
      const runRef = { ...app, number: run.number };
      reportEnd(runRef, await followRun(client, runRef, { jobs: null, progress: true }));
    });
}
