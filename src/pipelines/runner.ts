/**
 * Executing one run: its jobs as a graph (`needs`), matrix instances in parallel within the
 * bounds (`max-parallel`, the server's job slots), job `if` conditions, `fail-fast`, job
 * `concurrency`, approval gates for protected environments, and job outputs passed on to the
 * jobs that need them. Every state change is persisted before it is published.
 */
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import type { EventBus } from '../events.js';
import { now } from '../store/index.js';
import type { ApprovalGate } from './approvals.js';
import type { ConcurrencyGroups, Semaphore } from './concurrency.js';
import type { Executor } from './executors/executor.js';
import { evaluate, evaluateCondition, interpolate, truthy } from './expressions/index.js';
import { runJob, type JobRun, type JobStatus } from './job-runner.js';
import type { RunLogWriter } from './logs.js';
import { expandMatrix, matrixHasExpressions, resolveMatrix } from './matrix.js';
import type { PipelineTables } from './migrations.js';
import type { StepServices } from './steps/index.js';
import type { Job, Workflow } from './workflow.js';

export type RunRow = PipelineTables['runs'];
export type JobRow = PipelineTables['run_jobs'];
export const finalStatuses = ['succeeded', 'failed', 'cancelled'] as const;
export type FinalStatus = (typeof finalStatuses)[number];
const finalJob = new Set(['succeeded', 'failed', 'cancelled', 'skipped']);

export interface RunnerDeps {
  db: Kysely<PipelineTables>;
  events: EventBus;
  executors: ReadonlyMap<string, Executor>;
  services: StepServices;
  workspaceRoot: string;
  storageRoot: string;
  jobSlots: Semaphore;
  concurrency: ConcurrencyGroups;
  approvals: ApprovalGate;
}

export interface RunInputs {
  run: RunRow;
  workflow: Workflow;
  inputs: Record<string, unknown>;
  secrets: Record<string, string>;
  log: RunLogWriter;
  /**
   * The approval an environment asks for, from the app spec at the run's commit; `refused`
   * says why it cannot be asked (its team does not exist), which fails the job.
   */
  approvalFor(
    environment: string,
  ): { team: string; timeoutMinutes: number; refused?: string } | null;
}

/** The job rows a run starts with: one per matrix instance (an expression matrix is expanded when its job is ready). */
export function planJobs(workflow: Workflow): Omit<JobRow, 'run_id'>[] {
  const rows: Omit<JobRow, 'run_id'>[] = [];
  let position = 0;
  for (const [id, job] of Object.entries(workflow.jobs)) {
    const instances =
      job.strategy && !deferredMatrix(job)
        ? expandMatrix(job.strategy.matrix as Record<string, unknown>)
        : [null];
    for (const matrix of instances) {
      rows.push({
        job_key: jobKey(id, matrix),
        job_id: id,
        name: job.name && !job.name.includes('${{') ? job.name : jobKey(id, matrix),
        matrix: matrix ? JSON.stringify(matrix) : null,
        needs: JSON.stringify(job.needs),
        runs_on: job.runsOn.join(',') || 'local',
        status: 'pending',
        position: position++,
        environment: job.environment?.name ?? null,
        outputs: '{}',
        started_at: null,
        finished_at: null,
      });
    }
  }
  return rows;
}

/** A matrix that uses expressions is expanded when its job is ready (it may use `needs`). */
function deferredMatrix(job: Job): boolean {
  return typeof job.strategy?.matrix === 'string' || matrixHasExpressions(job.strategy?.matrix);
}

export function jobKey(id: string, matrix: Record<string, unknown> | null): string {
  if (!matrix || Object.keys(matrix).length === 0) return id;
  const values = Object.values(matrix).map((v) =>
    typeof v === 'object' ? JSON.stringify(v) : String(v),
  );
  return `${id} (${values.join(', ')})`;
}

/** Picks the executor for a job: its `runs-on` label, or podman when it asks for containers. */
export function executorFor(job: Job, executors: ReadonlyMap<string, Executor>): Executor {
  const label =
    job.runsOn.find((l) => executors.has(l)) ??
    (job.runsOn.length
      ? undefined
      : job.container || Object.keys(job.services).length
        ? 'podman'
        : 'local');
  const executor = label ? executors.get(label) : undefined;
  if (!executor) {
    const wanted = job.runsOn.length ? job.runsOn.join(', ') : label;
    throw new Error(
      `runs-on: no executor for "${wanted}" on this server (available: ${[...executors.keys()].join(', ')})`,
    );
  }
  if (job.container && !executor.capabilities.container)
    throw new Error(
      `container: the ${executor.name} executor cannot run job containers; use runs-on: podman`,
    );
  if (Object.keys(job.services).length && !executor.capabilities.services)
    throw new Error(
      `services: the ${executor.name} executor cannot run services; use runs-on: podman`,
    );
  return executor;
}

export async function executeRun(
  deps: RunnerDeps,
  input: RunInputs,
  signal: AbortSignal,
): Promise<{ status: FinalStatus; error: string | null }> {
  const { run, workflow, log } = input;
  const summaries: string[] = [];
  const setJob = async (key: string, update: Partial<JobRow>) => {
    await deps.db
      .updateTable('run_jobs')
      .set(update)
      .where('run_id', '=', run.id)
      .where('job_key', '=', key)
      .execute();
    deps.events.emit('run.updated', { runId: run.id, appId: run.app_id });
  };
  const setSteps = async (key: string, status: string) => {
    await deps.db
      .updateTable('run_steps')
      .set({ status })
      .where('run_id', '=', run.id)
      .where('job_id', '=', key)
      .where('status', 'in', ['pending', 'running'])
      .execute();
  };
  const rows = async () =>
    deps.db
      .selectFrom('run_jobs')
      .selectAll()
      .where('run_id', '=', run.id)
      .orderBy('position')
      .execute();

  const controllers = new Map<string, AbortController>();
  const running = new Map<string, Promise<void>>();
  let firstError: string | null = null;
  const baseContext = () => ({
    github: {
      sha: run.commit_sha,
      ref: run.ref,
      ref_name: run.ref.replace(/^refs\/(heads|tags)\//, ''),
      repository: `${run.team}/${run.app}`,
      actor: run.actor,
      event_name: run.trigger,
      run_number: String(run.number),
      run_id: run.id,
    },
    inputs: input.inputs,
    vars: {},
    env: workflow.env,
  });

  const needsContext = (job: Job, all: JobRow[]) => {
    const needs: Record<string, { result: string; outputs: Record<string, string> }> = {};
    for (const id of job.needs) {
      const instances = all.filter((r) => r.job_id === id);
      const statuses = instances.map((r) => r.status);
      const result = statuses.includes('failed')
        ? 'failure'
        : statuses.includes('cancelled')
          ? 'cancelled'
          : statuses.every((s) => s === 'skipped')
            ? 'skipped'
            : 'success';
      needs[id] = {
        result,
        outputs: Object.assign(
          {},
          ...instances.map((r) => JSON.parse(r.outputs) as Record<string, string>),
        ),
      };
    }
    return needs;
  };

  const startJob = (row: JobRow, all: JobRow[]) => {
    const job = workflow.jobs[row.job_id]!;
    const controller = new AbortController();
    controllers.set(row.job_key, controller);
    const jobSignal = AbortSignal.any([signal, controller.signal]);
    const instances = all.filter((r) => r.job_id === row.job_id);
    const jobRun: JobRun = {
      key: row.job_key,
      job,
      matrix: row.matrix ? (JSON.parse(row.matrix) as Record<string, unknown>) : null,
      strategy: {
        'fail-fast': job.strategy?.failFast ?? true,
        'job-index': instances.indexOf(row),
        'job-total': instances.length,
        'max-parallel': job.strategy?.maxParallel ?? instances.length,
      },
      needs: needsContext(job, all),
    };
    const promise = (async () => {
      const result = await executeJob(deps, input, row, jobRun, jobSignal, setJob, (markdown) =>
        summaries.push(markdown),
      );
      if (result.status === 'failed') {
        firstError ??= result.error;
        if (jobRun.strategy['fail-fast'] && !continueOnError(job, jobRun, input)) {
          for (const other of instances)
            if (other.job_key !== row.job_key) controllers.get(other.job_key)?.abort('fail-fast');
        }
      }
    })();
    running.set(row.job_key, promise);
    void promise.finally(() => running.delete(row.job_key));
  };

  for (;;) {
    const all = await rows();
    // A job whose matrix is an expression is expanded once the jobs it needs are done.
    for (const row of all.filter((r) => r.status === 'pending' && !running.has(r.job_key))) {
      const job = workflow.jobs[row.job_id]!;
      const needed = all.filter((r) => job.needs.includes(r.job_id));
      if (needed.some((r) => !finalJob.has(r.status))) continue;
      if (signal.aborted) {
        await setJob(row.job_key, { status: 'cancelled', finished_at: now() });
        await setSteps(row.job_key, 'cancelled');
        continue;
      }
      const needs = needsContext(job, all);
      const context = { ...baseContext(), needs };
      let proceed: boolean;
      try {
        proceed = evaluateCondition(job.if, context, {
          success: () =>
            Object.values(needs).every((n) => n.result === 'success' || n.result === 'skipped'),
          failure: () => Object.values(needs).some((n) => n.result === 'failure'),
          always: () => true,
          cancelled: () => signal.aborted,
          hashFiles: () => '',
        });
      } catch (error) {
        proceed = false;
        firstError ??= `${row.job_key}: if: ${error instanceof Error ? error.message : String(error)}`;
        log.line(`error: ${firstError}`);
      }
      if (!proceed) {
        log.line(
          `job ${row.job_key} skipped${job.if ? ` (if: ${job.if})` : ': a job it needs did not succeed'}`,
        );
        await setJob(row.job_key, { status: 'skipped', finished_at: now() });
        await setSteps(row.job_key, 'skipped');
        continue;
      }
      if (deferredMatrix(job) && row.matrix === null && row.job_key === row.job_id) {
        await expandLater(deps, run, row, job, context);
        break; // re-read the rows
      }
      const maxParallel = job.strategy?.maxParallel ?? Infinity;
      const active = [...running.keys()].filter(
        (key) => all.find((r) => r.job_key === key)?.job_id === row.job_id,
      ).length;
      if (active >= maxParallel) continue;
      await setJob(row.job_key, { status: 'queued' });
      row.status = 'queued';
      startJob(row, all);
    }
    const after = await rows();
    if (after.every((r) => finalJob.has(r.status)) && running.size === 0) break;
    if (running.size === 0 && !after.some((r) => r.status === 'pending')) break;
    if (running.size === 0) {
      // Pending jobs whose needs can never finish: nothing can start any more.
      const startable = after.some(
        (r) =>
          r.status === 'pending' &&
          workflow.jobs[r.job_id]!.needs.every((id) =>
            after.filter((x) => x.job_id === id).every((x) => finalJob.has(x.status)),
          ),
      );
      if (!startable) break;
      continue;
    }
    await Promise.race(running.values());
  }
  for (const row of await rows()) {
    if (!finalJob.has(row.status)) {
      await setJob(row.job_key, {
        status: signal.aborted ? 'cancelled' : 'skipped',
        finished_at: now(),
      });
      await setSteps(row.job_key, signal.aborted ? 'cancelled' : 'skipped');
    }
  }
  if (summaries.length) {
    await deps.db
      .updateTable('runs')
      .set({ summary: summaries.join('\n\n') })
      .where('id', '=', run.id)
      .execute();
  }
  if (signal.aborted) return { status: 'cancelled', error: 'cancelled' };
  const final = await rows();
  const failed = final.filter(
    (r) => r.status === 'failed' && !continueOnErrorRow(workflow, r, input),
  );
  if (failed.length)
    return { status: 'failed', error: firstError ?? `${failed[0]!.job_key} failed` };
  const cancelled = final.filter((r) => r.status === 'cancelled');
  if (cancelled.length)
    return {
      status: 'failed',
      error: `${cancelled.map((r) => r.job_key).join(', ')} cancelled (fail-fast)`,
    };
  return { status: 'succeeded', error: null };
}

async function executeJob(
  deps: RunnerDeps,
  input: RunInputs,
  row: JobRow,
  jobRun: JobRun,
  signal: AbortSignal,
  setJob: (key: string, update: Partial<JobRow>) => Promise<void>,
  summary: (markdown: string) => void,
): Promise<{ status: JobStatus; error: string | null }> {
  const { run, workflow, log } = input;
  const job = jobRun.job;
  const finish = async (
    status: JobStatus,
    error: string | null,
    outputs: Record<string, string> = {},
  ) => {
    await setJob(row.job_key, { status, outputs: JSON.stringify(outputs), finished_at: now() });
    await deps.db
      .updateTable('run_steps')
      .set({ status: status === 'cancelled' ? 'cancelled' : 'skipped' })
      .where('run_id', '=', run.id)
      .where('job_id', '=', row.job_key)
      .where('status', 'in', ['pending', 'running'])
      .execute();
    if (error) log.line(`job ${row.job_key} ${status}: ${error}`);
    return { status, error };
  };
  let executor: Executor;
  try {
    executor = executorFor(job, deps.executors);
  } catch (error) {
    return finish(
      'failed',
      `${row.job_key}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const expressionContext = {
    github: {
      sha: run.commit_sha,
      ref: run.ref,
      repository: `${run.team}/${run.app}`,
      actor: run.actor,
      event_name: run.trigger,
    },
    inputs: input.inputs,
    matrix: jobRun.matrix ?? {},
    needs: jobRun.needs,
    vars: {},
    env: workflow.env,
  };

  // Protected environments wait for their approving team.
  if (job.environment) {
    const environment = interpolate(job.environment.name, expressionContext);
    const approval = input.approvalFor(environment);
    if (approval?.refused) return finish('failed', `${row.job_key}: ${approval.refused}`);
    if (approval) {
      await setJob(row.job_key, { status: 'waiting', environment });
      log.line(
        `job ${row.job_key} waits for approval by team ${approval.team} to deploy to ${environment} (expires in ${approval.timeoutMinutes} min)`,
      );
      const outcome = await deps.approvals.wait(
        {
          runId: run.id,
          appId: run.app_id,
          jobKey: row.job_key,
          environment,
          team: approval.team,
          timeoutMinutes: approval.timeoutMinutes,
        },
        signal,
      );
      if (signal.aborted) return finish('cancelled', null);
      if (outcome !== 'approved')
        return finish('failed', `${row.job_key}: deployment to ${environment} was ${outcome}`);
      log.line(`job ${row.job_key}: deployment to ${environment} approved`);
    }
  }

  let releaseGroup: (() => void) | null = null;
  if (job.concurrency) {
    const group = interpolate(job.concurrency.group, expressionContext);
    const cancelInProgress =
      typeof job.concurrency.cancelInProgress === 'string'
        ? truthy(evaluate(job.concurrency.cancelInProgress, expressionContext))
        : job.concurrency.cancelInProgress;
    const pushedOut = new AbortController();
    const acquired = deps.concurrency.acquire(`job:${run.app_id}:${group}`, cancelInProgress, () =>
      pushedOut.abort('concurrency'),
    );
    const outcome = await Promise.race([
      acquired,
      new Promise<null>((resolve) =>
        AbortSignal.any([signal, pushedOut.signal]).addEventListener('abort', () => resolve(null), {
          once: true,
        }),
      ),
    ]);
    if (!outcome)
      return finish(
        'cancelled',
        `${row.job_key}: cancelled by a newer job in concurrency group ${group}`,
      );
    releaseGroup = outcome;
    signal = AbortSignal.any([signal, pushedOut.signal]);
  }
  let releaseSlot: () => void;
  try {
    releaseSlot = await deps.jobSlots.acquire(signal);
  } catch {
    releaseGroup?.();
    return finish('cancelled', null);
  }
  try {
    await setJob(row.job_key, { status: 'running', started_at: now() });
    const result = await runJob(
      {
        run: {
          id: run.id,
          number: run.number,
          team: run.team,
          app: run.app,
          commit: run.commit_sha,
          ref: run.ref,
          actor: run.actor,
          workflow: run.workflow,
          event: run.trigger,
        },
        workflow,
        inputs: input.inputs,
        secrets: input.secrets,
        log,
        executor,
        services: deps.services,
        jobDir: join(deps.workspaceRoot, run.id, row.job_key.replace(/[^A-Za-z0-9_.-]+/g, '_')),
        storage: {
          cache: join(deps.storageRoot, 'cache', run.team, run.app),
          artifacts: join(deps.storageRoot, 'artifacts', run.id),
        },
        summary,
        setStep: async (index, update) => {
          await deps.db
            .updateTable('run_steps')
            .set({
              status: update.status,
              ...(update.exitCode !== undefined ? { exit_code: update.exitCode } : {}),
              ...(update.startedAt ? { started_at: update.startedAt } : {}),
              ...(update.finishedAt ? { finished_at: update.finishedAt } : {}),
            })
            .where('run_id', '=', run.id)
            .where('job_id', '=', row.job_key)
            .where('step_index', '=', index)
            .execute();
          deps.events.emit('run.updated', { runId: run.id, appId: run.app_id });
        },
      },
      jobRun,
      signal,
    );
    return finish(result.status, result.error, result.outputs);
  } finally {
    releaseSlot();
    releaseGroup?.();
  }
}

/** Expands an expression matrix (e.g. `${{ fromJSON(needs.plan.outputs.matrix) }}`) into job rows. */
async function expandLater(
  deps: RunnerDeps,
  run: RunRow,
  row: JobRow,
  job: Job,
  context: Record<string, unknown>,
) {
  const instances = expandMatrix(resolveMatrix(job.strategy!.matrix, context));
  const steps = await deps.db
    .selectFrom('run_steps')
    .selectAll()
    .where('run_id', '=', run.id)
    .where('job_id', '=', row.job_key)
    .execute();
  await deps.db.transaction().execute(async (tx) => {
    await tx
      .deleteFrom('run_steps')
      .where('run_id', '=', run.id)
      .where('job_id', '=', row.job_key)
      .execute();
    await tx
      .deleteFrom('run_jobs')
      .where('run_id', '=', run.id)
      .where('job_key', '=', row.job_key)
      .execute();
    for (const [i, matrix] of instances.entries()) {
      const key = jobKey(row.job_id, matrix);
      await tx
        .insertInto('run_jobs')
        .values({
          ...row,
          job_key: key,
          name: key,
          matrix: JSON.stringify(matrix),
          position: row.position + i / 1000,
        })
        .execute();
      if (steps.length)
        await tx
          .insertInto('run_steps')
          .values(steps.map((s) => ({ ...s, job_id: key })))
          .execute();
    }
  });
}

function continueOnError(job: Job, jobRun: JobRun, input: RunInputs): boolean {
  if (typeof job.continueOnError === 'boolean') return job.continueOnError;
  try {
    return truthy(
      evaluate(job.continueOnError, {
        matrix: jobRun.matrix ?? {},
        inputs: input.inputs,
        needs: jobRun.needs,
      }),
    );
  } catch {
    return false;
  }
}

function continueOnErrorRow(workflow: Workflow, row: JobRow, input: RunInputs): boolean {
  const job = workflow.jobs[row.job_id]!;
  const matrix = row.matrix ? (JSON.parse(row.matrix) as Record<string, unknown>) : null;
  return continueOnError(
    job,
    {
      key: row.job_key,
      job,
      matrix,
      strategy: { 'fail-fast': true, 'job-index': 0, 'job-total': 1, 'max-parallel': 1 },
      needs: {},
    },
    input,
  );
}
