import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { ValveError, notFound } from '../errors.js';
import type { EventBus } from '../events.js';
import { FileValidationError } from '../formats/yaml.js';
import { listFilesAt, readCommit, readFileAt } from '../git/index.js';
import { newId } from '../ids.js';
import { now, sql } from '../store/index.js';
import type { Executor } from './executors/executor.js';
import type { RunLogStore } from './logs.js';
import type { PipelineTables } from './migrations.js';
import { executeRun, stepName, type RunRow } from './runner.js';
import { builtinSteps, type StepServices } from './steps/index.js';
import { WORKFLOW_DIRS, jobOrder, matchesPush, parseWorkflow, type Workflow } from './workflow.js';

export interface PushEvent {
  app: { id: string; team: string; name: string };
  gitDir: string;
  ref: string;
  commit: string;
  pusher: string;
}

export interface PipelineServiceOptions {
  db: Kysely<PipelineTables>;
  events: EventBus;
  logs: RunLogStore;
  executor: Executor;
  services: StepServices;
  workspaceRoot: string;
  maxParallelRuns: number;
  /** Where an app's source repo is, to read a run's workflow at its commit. */
  sourceGitDir(team: string, app: string): string;
  log?: { warn(obj: object, msg?: string): void };
}

const knownSteps = new Set(builtinSteps.keys());

/** The run queue: persisted runs, bounded parallelism, cancel, and recovery after a restart. */
export class PipelineService {
  private readonly active = new Map<string, AbortController>();
  private readonly waiting: string[] = [];
  private stopped = false;

  constructor(private readonly options: PipelineServiceOptions) {}

  /** After a restart: a run that was executing cannot be resumed mid-step, so it is marked failed; queued runs start. */
  async start(): Promise<void> {
    const interrupted = await this.options.db
      .selectFrom('runs')
      .selectAll()
      .where('status', '=', 'running')
      .execute();
    for (const run of interrupted) {
      const orphans = await this.options.executor.cleanupAfterCrash(
        join(this.options.workspaceRoot, run.id),
      );
      this.options.logs
        .writer(run.id)
        .line(
          `error: the server stopped during this run; it was marked failed on restart${orphans ? ` and its ${orphans} leftover process(es) killed` : ''}`,
        );
      await this.options.db
        .updateTable('run_steps')
        .set({ status: 'failed', finished_at: now() })
        .where('run_id', '=', run.id)
        .where('status', '=', 'running')
        .execute();
      await this.options.db
        .updateTable('run_steps')
        .set({ status: 'skipped' })
        .where('run_id', '=', run.id)
        .where('status', '=', 'pending')
        .execute();
      await this.finish(run, 'failed', 'the server stopped during the run');
      rmSync(join(this.options.workspaceRoot, run.id), { recursive: true, force: true });
    }
    const queued = await this.options.db
      .selectFrom('runs')
      .select('id')
      .where('status', '=', 'queued')
      .orderBy('created_at')
      .execute();
    this.waiting.push(...queued.map((r) => r.id));
    this.pump();
  }

  /** Stops taking runs; runs in progress are cancelled. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const controller of this.active.values()) controller.abort();
  }

  /** A push: one run per workflow file that asks for it; a broken workflow file gives a failed run naming the problem. */
  async onPush(push: PushEvent): Promise<RunRow[]> {
    const files: string[] = [];
    for (const dir of WORKFLOW_DIRS) {
      files.push(
        ...(await listFilesAt(push.gitDir, push.commit, dir)).filter((f) => /\.ya?ml$/.test(f)),
      );
    }
    const commit = await readCommit(push.gitDir, push.commit);
    const runs: RunRow[] = [];
    for (const file of files) {
      const text = (await readFileAt(push.gitDir, push.commit, file))?.toString() ?? '';
      let workflow: Workflow;
      try {
        workflow = parseWorkflow(text, file, knownSteps);
      } catch (error) {
        if (!(error instanceof FileValidationError)) throw error;
        const run = await this.createRun(push, file, commit?.subject ?? '', null);
        const log = this.options.logs.writer(run.id);
        log.line(`workflow file ${file} is invalid; no job was started:`);
        for (const problem of error.message.split('\n')) log.line(`error: ${problem}`);
        await this.finish(run, 'failed', error.message.split('\n')[0]!);
        runs.push(run);
        continue;
      }
      if (!matchesPush(workflow, push.ref)) continue;
      const run = await this.createRun(push, file, commit?.subject ?? '', workflow);
      runs.push(run);
      this.waiting.push(run.id);
    }
    this.pump();
    return runs;
  }

  async cancel(runId: string): Promise<void> {
    const run = await this.options.db
      .selectFrom('runs')
      .selectAll()
      .where('id', '=', runId)
      .executeTakeFirst();
    if (!run) throw notFound('run');
    if (run.status !== 'queued' && run.status !== 'running')
      throw new ValveError(
        'PIPE_RUN_NOT_CANCELLABLE',
        `run #${run.number} is already ${run.status}`,
      );
    const index = this.waiting.indexOf(runId);
    if (index >= 0) {
      this.waiting.splice(index, 1);
      await this.options.db
        .updateTable('run_steps')
        .set({ status: 'cancelled' })
        .where('run_id', '=', runId)
        .execute();
      await this.finish(run, 'cancelled', 'cancelled before it started');
      return;
    }
    this.active.get(runId)?.abort();
  }

  private async createRun(
    push: PushEvent,
    file: string,
    message: string,
    workflow: Workflow | null,
  ): Promise<RunRow> {
    return this.options.db.transaction().execute(async (tx) => {
      const last = await tx
        .selectFrom('runs')
        .select((eb) => eb.fn.max('number').as('max'))
        .where('app_id', '=', push.app.id)
        .executeTakeFirst();
      const run: RunRow = {
        id: newId('run'),
        app_id: push.app.id,
        team: push.app.team,
        app: push.app.name,
        number: Number(last?.max ?? 0) + 1,
        workflow: file,
        status: 'queued',
        commit_sha: push.commit,
        ref: push.ref,
        commit_message: message,
        actor: push.pusher,
        trigger: 'push',
        error: null,
        created_at: now(),
        started_at: null,
        finished_at: null,
      };
      await tx.insertInto('runs').values(run).execute();
      if (workflow) {
        const rows = jobOrder(workflow).flatMap((jobId) =>
          workflow.jobs[jobId]!.steps.map((step, index) => ({
            run_id: run.id,
            job_id: jobId,
            job_name: workflow.jobs[jobId]!.name ?? jobId,
            step_index: index,
            name: stepName(step, index),
            kind: step.uses ?? 'run',
            status: 'pending',
            exit_code: null,
            started_at: null,
            finished_at: null,
          })),
        );
        await tx.insertInto('run_steps').values(rows).execute();
      }
      this.options.events.emit('run.updated', { runId: run.id, appId: run.app_id });
      return run;
    });
  }

  private pump(): void {
    while (
      !this.stopped &&
      this.active.size < this.options.maxParallelRuns &&
      this.waiting.length
    ) {
      const runId = this.waiting.shift()!;
      const controller = new AbortController();
      this.active.set(runId, controller);
      void this.execute(runId, controller.signal)
        .catch((error: unknown) => this.options.log?.warn({ err: error, runId }, 'run crashed'))
        .finally(() => {
          this.active.delete(runId);
          this.pump();
        });
    }
  }

  private async execute(runId: string, signal: AbortSignal): Promise<void> {
    const run = await this.options.db
      .selectFrom('runs')
      .selectAll()
      .where('id', '=', runId)
      .executeTakeFirstOrThrow();
    const gitDir = this.options.sourceGitDir(run.team, run.app);
    const text = (await readFileAt(gitDir, run.commit_sha, run.workflow))?.toString() ?? '';
    const workflow = parseWorkflow(text, run.workflow, knownSteps);
    const started = { ...run, status: 'running', started_at: now() };
    await this.options.db
      .updateTable('runs')
      .set({ status: 'running', started_at: started.started_at })
      .where('id', '=', runId)
      .execute();
    this.options.events.emit('run.updated', { runId, appId: run.app_id });
    let status: RunRow['status'];
    try {
      status = await executeRun(
        { ...this.options, workspaceRoot: this.options.workspaceRoot },
        started,
        workflow,
        signal,
      );
    } catch (error) {
      this.options.logs
        .writer(runId)
        .line(`error: ${error instanceof Error ? error.message : String(error)}`);
      status = 'failed';
    }
    const error =
      status === 'cancelled'
        ? 'cancelled'
        : status === 'failed'
          ? ((await this.get(runId))?.error ?? 'failed')
          : null;
    await this.finish(started, status, error);
  }

  private async finish(run: RunRow, status: string, error: string | null): Promise<void> {
    await this.options.db
      .updateTable('runs')
      .set({ status, error, finished_at: now() })
      .where('id', '=', run.id)
      .execute();
    this.options.logs
      .writer(run.id)
      .line(`run #${run.number} ${status}${error && status !== 'succeeded' ? `: ${error}` : ''}`);
    this.options.events.emit('run.updated', { runId: run.id, appId: run.app_id });
  }

  get(runId: string): Promise<RunRow | undefined> {
    return this.options.db
      .selectFrom('runs')
      .selectAll()
      .where('id', '=', runId)
      .executeTakeFirst();
  }

  byNumber(appId: string, number: number): Promise<RunRow | undefined> {
    return this.options.db
      .selectFrom('runs')
      .selectAll()
      .where('app_id', '=', appId)
      .where('number', '=', number)
      .executeTakeFirst();
  }

  list(appId: string, limit = 50): Promise<RunRow[]> {
    return this.options.db
      .selectFrom('runs')
      .selectAll()
      .where('app_id', '=', appId)
      .orderBy('number', 'desc')
      .limit(limit)
      .execute();
  }

  /** The API's view of a run: its jobs and steps with their states and times. */
  async view(run: RunRow) {
    const steps = await this.options.db
      .selectFrom('run_steps')
      .selectAll()
      .where('run_id', '=', run.id)
      .orderBy(sql`rowid`)
      .execute();
    const jobs = new Map<string, { id: string; name: string; status: string; steps: object[] }>();
    for (const step of steps) {
      const job = jobs.get(step.job_id) ?? {
        id: step.job_id,
        name: step.job_name,
        status: 'pending',
        steps: [],
      };
      jobs.set(step.job_id, job);
      job.steps.push({
        index: step.step_index,
        name: step.name,
        kind: step.kind,
        status: step.status,
        startedAt: step.started_at,
        finishedAt: step.finished_at,
        exitCode: step.exit_code,
      });
    }
    for (const job of jobs.values()) {
      const states = job.steps.map((s) => (s as { status: string }).status);
      job.status =
        ['running', 'failed', 'cancelled'].find((s) => states.includes(s)) ??
        (states.every((s) => s === 'succeeded' || s === 'skipped') && states.includes('succeeded')
          ? 'succeeded'
          : states.every((s) => s === 'skipped')
            ? 'skipped'
            : 'pending');
    }
    return {
      id: run.id,
      number: run.number,
      team: run.team,
      app: run.app,
      workflow: run.workflow,
      status: run.status,
      commit: run.commit_sha,
      ref: run.ref,
      commitMessage: run.commit_message,
      actor: run.actor,
      trigger: run.trigger,
      createdAt: run.created_at,
      startedAt: run.started_at,
      finishedAt: run.finished_at,
      error: run.error,
      jobs: [...jobs.values()],
    };
  }
}
