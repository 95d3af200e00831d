/**
 * Executing one run: its jobs in `needs` order, each job's steps in sequence in a fresh
 * workspace, every state change persisted before it is published, every output line logged.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Kysely } from 'kysely';
import type { EventBus } from '../events.js';
import { describeZodErrorPlain } from './describe.js';
import type { Executor } from './executors/executor.js';
import { interpolate, type ExpressionContext } from './expressions.js';
import type { RunLogStore, RunLogWriter } from './logs.js';
import type { PipelineTables } from './migrations.js';
import { builtinSteps, type StepServices } from './steps/index.js';
import { jobOrder, type Workflow, type WorkflowStep } from './workflow.js';
import { now } from '../store/index.js';

export type RunRow = PipelineTables['runs'];
export const finalStatuses = ['succeeded', 'failed', 'cancelled'] as const;
export type FinalStatus = (typeof finalStatuses)[number];

export interface RunnerDeps {
  db: Kysely<PipelineTables>;
  events: EventBus;
  logs: RunLogStore;
  executor: Executor;
  services: StepServices;
  workspaceRoot: string;
}

// Only these variables of the server's own environment reach steps: never its secrets.
const passedThrough = ['PATH', 'HOME', 'USER', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'SHELL'];
const DEFAULT_TIMEOUT_MINUTES = 60;

export async function executeRun(
  deps: RunnerDeps,
  run: RunRow,
  workflow: Workflow,
  signal: AbortSignal,
): Promise<FinalStatus> {
  const log = deps.logs.writer(run.id);
  const failedJobs = new Set<string>();
  let firstError: string | null = null;
  log.line(
    `run #${run.number} of ${run.workflow} for ${run.commit_sha.slice(0, 12)} (${run.ref}) by ${run.actor}`,
  );
  for (const jobId of jobOrder(workflow)) {
    const job = workflow.jobs[jobId]!;
    const blockedBy = (job.needs ?? []).filter((need) => failedJobs.has(need));
    if (blockedBy.length || signal.aborted) {
      failedJobs.add(jobId);
      await setSteps(deps, run.id, jobId, signal.aborted ? 'cancelled' : 'skipped');
      log.line(
        `job ${jobId} skipped: ${signal.aborted ? 'run cancelled' : `needs ${blockedBy.join(', ')} which failed`}`,
      );
      continue;
    }
    const error = await executeJob(deps, run, workflow, jobId, log, signal);
    if (error) {
      failedJobs.add(jobId);
      firstError ??= error;
    }
  }
  if (signal.aborted) return 'cancelled';
  if (firstError) {
    await deps.db.updateTable('runs').set({ error: firstError }).where('id', '=', run.id).execute();
    return 'failed';
  }
  return 'succeeded';
}

/** Runs one job; returns null on success or the reason it failed. */
async function executeJob(
  deps: RunnerDeps,
  run: RunRow,
  workflow: Workflow,
  jobId: string,
  log: RunLogWriter,
  signal: AbortSignal,
): Promise<string | null> {
  const job = workflow.jobs[jobId]!;
  const workspace = join(deps.workspaceRoot, run.id, jobId);
  rmSync(workspace, { recursive: true, force: true });
  mkdirSync(workspace, { recursive: true });
  const jobDeadline = Date.now() + (job['timeout-minutes'] ?? DEFAULT_TIMEOUT_MINUTES) * 60_000;
  const steps: Record<
    string,
    { outputs: Record<string, string>; outcome: string; conclusion: string }
  > = {};
  const github = {
    sha: run.commit_sha,
    ref: run.ref,
    ref_name: run.ref.replace(/^refs\/(heads|tags)\//, ''),
    repository: `${run.team}/${run.app}`,
    actor: run.actor,
    run_id: run.id,
    run_number: String(run.number),
    workspace,
    job: jobId,
    event_name: run.trigger,
  };
  let failure: string | null = null;
  for (const [index, step] of job.steps.entries()) {
    const stepKey = `${jobId}/${index}`;
    if (failure || signal.aborted) {
      await setStep(deps, run.id, jobId, index, {
        status: signal.aborted ? 'cancelled' : 'skipped',
      });
      continue;
    }
    const name = stepName(step, index);
    log.line(`▶ ${name}`, stepKey);
    await setStep(deps, run.id, jobId, index, { status: 'running', started_at: now() });
    const env = { ...workflow.env, ...job.env };
    const context: ExpressionContext = {
      github,
      env,
      steps,
      runner: { os: 'Linux', temp: workspace },
    };
    let exitCode = 0;
    let outputs: Record<string, string> = {};
    let error: string | null = null;
    try {
      const stepEnv = Object.fromEntries(
        Object.entries({ ...env, ...step.env }).map(([k, v]) => [k, interpolate(v, context)]),
      );
      const timeoutMs = Math.min(
        jobDeadline - Date.now(),
        (step['timeout-minutes'] ?? Infinity) * 60_000,
      );
      if (step.run !== undefined) {
        const result = await runScriptStep(
          deps,
          step,
          stepKey,
          workspace,
          { ...githubEnv(github), ...stepEnv },
          context,
          timeoutMs,
          log,
          signal,
        );
        exitCode = result.exitCode;
        outputs = result.outputs;
        if (result.error) error = result.error;
      } else {
        outputs = await runBuiltinStep(deps, run, step, stepKey, workspace, context, log, signal);
      }
    } catch (thrown) {
      exitCode = 1;
      error = thrown instanceof Error ? thrown.message : String(thrown);
    }
    if (error) {
      for (const line of error.split('\n')) log.line(`error: ${line}`, stepKey);
      failure = `${jobId}: ${name}: ${error.split('\n')[0]}`;
    }
    const status = signal.aborted ? 'cancelled' : error ? 'failed' : 'succeeded';
    if (step.id)
      steps[step.id] = {
        outputs,
        outcome: status === 'succeeded' ? 'success' : 'failure',
        conclusion: status === 'succeeded' ? 'success' : 'failure',
      };
    await setStep(deps, run.id, jobId, index, { status, exit_code: exitCode, finished_at: now() });
  }
  rmSync(join(deps.workspaceRoot, run.id), { recursive: true, force: true });
  return failure;
}

async function runScriptStep(
  deps: RunnerDeps,
  step: WorkflowStep,
  stepKey: string,
  workspace: string,
  env: Record<string, string>,
  context: ExpressionContext,
  timeoutMs: number,
  log: RunLogWriter,
  signal: AbortSignal,
): Promise<{ exitCode: number; outputs: Record<string, string>; error?: string }> {
  const outputFile = join(workspace, '..', `${stepKey.replace('/', '-')}.outputs`);
  writeFileSync(outputFile, '');
  const cwd = resolve(workspace, step['working-directory'] ?? '.');
  if (!existsSync(cwd))
    return {
      exitCode: 1,
      outputs: {},
      error: `working-directory ${step['working-directory']} does not exist`,
    };
  const base = Object.fromEntries(
    passedThrough.flatMap((name) => (process.env[name] ? [[name, process.env[name]!]] : [])),
  );
  const lines = log.lineSplitter(stepKey);
  const result = await deps.executor.runScript({
    script: interpolate(step.run!, context),
    shell: step.shell ?? 'bash',
    cwd,
    env: {
      ...base,
      CI: 'true',
      VALVE: 'true',
      ...env,
      GITHUB_OUTPUT: outputFile,
      VALVE_OUTPUT: outputFile,
    },
    timeoutMs,
    signal,
    onOutput: (chunk) => lines.write(chunk),
  });
  lines.flush();
  const outputs = parseOutputs(readFileSync(outputFile, 'utf8'));
  if (result.stopped === 'timeout')
    return {
      exitCode: result.exitCode,
      outputs,
      error: `timed out after ${Math.round(timeoutMs / 1000)} s; its processes were killed`,
    };
  if (result.stopped === 'cancelled')
    return { exitCode: result.exitCode, outputs, error: 'cancelled' };
  if (result.exitCode !== 0)
    return { exitCode: result.exitCode, outputs, error: `exited with code ${result.exitCode}` };
  return { exitCode: 0, outputs };
}

async function runBuiltinStep(
  deps: RunnerDeps,
  run: RunRow,
  step: WorkflowStep,
  stepKey: string,
  workspace: string,
  context: ExpressionContext,
  log: RunLogWriter,
  signal: AbortSignal,
): Promise<Record<string, string>> {
  const name = /^valve\/([a-z-]+)@/.exec(step.uses!)![1]!;
  const builtin = builtinSteps.get(name);
  if (!builtin) throw new Error(`unknown built-in step ${step.uses}`);
  const raw = Object.fromEntries(
    Object.entries(step.with ?? {}).map(([k, v]) => [k, interpolate(v, context)]),
  );
  const parsed = builtin.inputs.safeParse(raw);
  if (!parsed.success)
    throw new Error(`${step.uses}: ${describeZodErrorPlain(parsed.error, 'with')}`);
  return builtin.run(
    {
      workspace,
      run: {
        id: run.id,
        number: run.number,
        team: run.team,
        app: run.app,
        commit: run.commit_sha,
        ref: run.ref,
        actor: run.actor,
      },
      signal,
      services: deps.services,
      log: (text) => log.line(text, stepKey),
    },
    parsed.data,
  );
}

function githubEnv(github: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(github).map(([k, v]) => [`GITHUB_${k.toUpperCase()}`, v]),
  );
}

/** `name=value` lines and `name<<DELIM` ... `DELIM` blocks, as in GitHub's $GITHUB_OUTPUT. */
export function parseOutputs(text: string): Record<string, string> {
  const outputs: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const body: string[] = [];
      while (++i < lines.length && lines[i] !== heredoc[2]) body.push(lines[i]!);
      outputs[heredoc[1]!] = body.join('\n');
    } else if (line.includes('=')) {
      outputs[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
    }
  }
  return outputs;
}

export function stepName(step: WorkflowStep, index: number): string {
  if (step.name) return step.name;
  if (step.uses) return `Run ${step.uses}`;
  return `Run ${step.run?.split('\n')[0]?.slice(0, 60) || `step ${index + 1}`}`;
}

type StepUpdate = Partial<
  Pick<PipelineTables['run_steps'], 'status' | 'exit_code' | 'started_at' | 'finished_at'>
>;

async function setStep(
  deps: RunnerDeps,
  runId: string,
  jobId: string,
  index: number,
  update: StepUpdate,
) {
  await deps.db
    .updateTable('run_steps')
    .set(update)
    .where('run_id', '=', runId)
    .where('job_id', '=', jobId)
    .where('step_index', '=', index)
    .execute();
  const run = await deps.db
    .selectFrom('runs')
    .select('app_id')
    .where('id', '=', runId)
    .executeTakeFirst();
  if (run) deps.events.emit('run.updated', { runId, appId: run.app_id });
}

async function setSteps(deps: RunnerDeps, runId: string, jobId: string, status: string) {
  await deps.db
    .updateTable('run_steps')
    .set({ status })
    .where('run_id', '=', runId)
    .where('job_id', '=', jobId)
    .execute();
}
