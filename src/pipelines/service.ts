import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CronExpressionParser } from 'cron-parser';
import type { Kysely } from 'kysely';
import { APP_SPEC_FILE, parseAppSpec, unknownApprovingTeam } from '../deploy/index.js';
import { ValveError, notFound } from '../errors.js';
import type { EventBus } from '../events.js';
import { FileValidationError } from '../formats/yaml.js';
import { listFilesAt, readCommit, readFileAt, resolveRef, runGit, ZERO_OID } from '../git/index.js';
import { newId } from '../ids.js';
import { now, sql } from '../store/index.js';
import { ApprovalGate, type ApprovalDecision } from './approvals.js';
import { ConcurrencyGroups, Semaphore } from './concurrency.js';
import type { Executor } from './executors/executor.js';
import { interpolate, referencesSecret } from './expressions/index.js';
import { stepName } from './job-runner.js';
import type { RunLogStore } from './logs.js';
import type { PipelineTables } from './migrations.js';
import { executeRun, planJobs, type RunRow } from './runner.js';
import { Masker, type SecretStore } from './secrets/index.js';
import { builtinSteps, type StepServices } from './steps/index.js';
import { cronSchedules, matchesPush, resolveDispatchInputs } from './triggers.js';
import { WORKFLOW_DIRS, parseWorkflow, type Workflow } from './workflow.js';

export interface AppRef {
  id: string;
  team: string;
  name: string;
  defaultBranch: string;
}

export interface PushEvent {
  app: AppRef;
  gitDir: string;
  ref: string;
  before: string | null;
  commit: string;
  pusher: string;
  /** `push` for git pushes to Valve, `webhook` for pushes reported by an external provider. */
  event?: 'push' | 'webhook';
}

export interface RunFilters {
  status?: string;
  event?: string;
  branch?: string;
  actor?: string;
  limit?: number;
}

export interface PipelineServiceOptions {
  db: Kysely<PipelineTables>;
  events: EventBus;
  logs: RunLogStore;
  executors: ReadonlyMap<string, Executor>;
  services: StepServices;
  secrets: SecretStore;
  workspaceRoot: string;
  /** Caches and artifacts live under here. */
  storageRoot: string;
  maxParallelRuns: number;
  maxParallelJobs: number;
  /** Where an app's source repo is, to read a run's workflow at its commit. */
  sourceGitDir(team: string, app: string): string;
  /** Every app, for scheduled workflows. */
  listApps(): Promise<AppRef[]>;
  /**
   * Whether a team exists: a job deploying to an environment whose approving team does not
   * is failed rather than left for whoever creates that team. Absent: every team does.
   */
  teamExists?: (name: string) => Promise<boolean>;
  /** How often scheduled workflows are checked (default 30 s). */
  scheduleIntervalMs?: number;
  log?: { warn(obj: object, msg?: string): void };
}

const knownSteps = new Set(builtinSteps.keys());
const finished = ['succeeded', 'failed', 'cancelled'];

/** The run queue: persisted runs, bounded parallelism, cancel, re-run, dispatch, schedules, approvals, recovery. */
export class PipelineService {
  private readonly active = new Map<string, AbortController>();
  private readonly waiting: string[] = [];
  private readonly concurrency = new ConcurrencyGroups();
  private readonly jobSlots: Semaphore;
  readonly approvals: ApprovalGate;
  private scheduler: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: PipelineServiceOptions) {
    this.jobSlots = new Semaphore(options.maxParallelJobs);
    this.approvals = new ApprovalGate(options.db, options.events);
  }

  /** After a restart: runs that were executing cannot be resumed mid-step, so they are marked failed; queued runs start. */
  async start(): Promise<void> {
    const interrupted = await this.options.db
      .selectFrom('runs')
      .selectAll()
      .where('status', '=', 'running')
      .execute();
    for (const run of interrupted) {
      const orphans = await Promise.all(
        [...this.options.executors.values()].map((e) =>
          e.cleanupAfterCrash(join(this.options.workspaceRoot, run.id)).catch(() => 0),
        ),
      );
      const killed = orphans.reduce((a, b) => a + b, 0);
      this.options.logs
        .writer(run.id)
        .line(
          `error: the server stopped during this run; it was marked failed on restart${killed ? ` and its ${killed} leftover process(es) killed` : ''}`,
        );
      await this.settleRows(run.id, ['running', 'queued', 'waiting'], 'failed', now());
      await this.settleRows(run.id, ['pending'], 'skipped');
      await this.options.db
        .updateTable('approvals')
        .set({ status: 'expired', decided_at: now() })
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
    this.scheduler = setInterval(
      () =>
        void this.fireSchedules().catch((error: unknown) =>
          this.options.log?.warn({ err: error }, 'schedules failed'),
        ),
      this.options.scheduleIntervalMs ?? 30_000,
    );
    this.scheduler.unref();
  }

  /** Stops taking runs; runs in progress are cancelled. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.scheduler);
    for (const controller of this.active.values()) controller.abort();
  }

  /** Workflow files at a commit, parsed; a broken file is returned with its error. */
  async workflowsAt(
    gitDir: string,
    commit: string,
  ): Promise<{ file: string; workflow: Workflow | null; error: FileValidationError | null }[]> {
    const files: string[] = [];
    for (const dir of WORKFLOW_DIRS)
      files.push(...(await listFilesAt(gitDir, commit, dir)).filter((f) => /\.ya?ml$/.test(f)));
    return Promise.all(
      files.map(async (file) => {
        const text = (await readFileAt(gitDir, commit, file))?.toString() ?? '';
        try {
          return { file, workflow: parseWorkflow(text, file, { knownSteps }), error: null };
        } catch (error) {
          if (error instanceof FileValidationError) return { file, workflow: null, error };
          throw error;
        }
      }),
    );
  }

  /** A push: one run per workflow file that asks for it; a broken workflow file gives a failed run naming the problem. */
  async onPush(push: PushEvent): Promise<RunRow[]> {
    const changedFiles = await this.changedFiles(push.gitDir, push.before, push.commit);
    const commit = await readCommit(push.gitDir, push.commit);
    const runs: RunRow[] = [];
    for (const { file, workflow, error } of await this.workflowsAt(push.gitDir, push.commit)) {
      const base = {
        app: push.app,
        file,
        commit: push.commit,
        ref: push.ref,
        message: commit?.subject ?? '',
        actor: push.pusher,
        event: push.event ?? 'push',
        inputs: {},
      };
      if (error) {
        const run = await this.createRun({ ...base, workflow: null });
        const log = this.options.logs.writer(run.id);
        log.line(`workflow file ${file} is invalid; no job was started:`);
        for (const problem of error.message.split('\n')) log.line(`error: ${problem}`);
        await this.finish(run, 'failed', error.message.split('\n')[0]!);
        runs.push(run);
        continue;
      }
      if (!workflow?.on.push || !matchesPush(workflow.on, { ref: push.ref, changedFiles }))
        continue;
      runs.push(await this.enqueue({ ...base, workflow }));
    }
    return runs;
  }

  /** A manual run (`workflow_dispatch`) of one workflow at the tip of a branch, with inputs. */
  async dispatch(
    app: AppRef,
    request: { workflow: string; ref?: string; inputs?: Record<string, unknown>; actor: string },
  ): Promise<RunRow> {
    const gitDir = this.options.sourceGitDir(app.team, app.name);
    const ref = request.ref
      ? request.ref.startsWith('refs/')
        ? request.ref
        : `refs/heads/${request.ref}`
      : `refs/heads/${app.defaultBranch}`;
    const commit = await resolveRef(gitDir, ref);
    if (!commit) throw new ValveError('INPUT_INVALID', `ref: ${ref} does not exist`);
    const found = (await this.workflowsAt(gitDir, commit)).find(
      (w) => w.file === request.workflow || w.file.endsWith(`/${request.workflow}`),
    );
    if (!found)
      throw new ValveError(
        'INPUT_INVALID',
        `workflow: no workflow file ${request.workflow} at ${ref}`,
      );
    if (found.error) throw new ValveError('PIPE_WORKFLOW_INVALID', found.error.message);
    if (!found.workflow!.on.workflowDispatch)
      throw new ValveError(
        'INPUT_INVALID',
        `workflow: ${found.file} has no workflow_dispatch trigger`,
      );
    const inputs = resolveDispatchInputs(found.workflow!.on, request.inputs ?? {});
    const info = await readCommit(gitDir, commit);
    return this.enqueue({
      app,
      file: found.file,
      workflow: found.workflow!,
      commit,
      ref,
      message: info?.subject ?? '',
      actor: request.actor,
      event: 'workflow_dispatch',
      inputs,
    });
  }

  /** A new run of the same commit, workflow and inputs; with failedOnly, jobs that succeeded keep their results. */
  async rerun(runId: string, request: { failedOnly: boolean; actor: string }): Promise<RunRow> {
    const previous = await this.get(runId);
    if (!previous) throw notFound('run');
    if (!finished.includes(previous.status))
      throw new ValveError('CONFLICT', `run #${previous.number} is still ${previous.status}`);
    const gitDir = this.options.sourceGitDir(previous.team, previous.app);
    const text =
      (await readFileAt(gitDir, previous.commit_sha, previous.workflow))?.toString() ?? '';
    const workflow = parseWorkflow(text, previous.workflow, { knownSteps });
    const keep = request.failedOnly
      ? await this.options.db
          .selectFrom('run_jobs')
          .selectAll()
          .where('run_id', '=', runId)
          .where('status', '=', 'succeeded')
          .execute()
      : [];
    return this.enqueue(
      {
        app: { id: previous.app_id, team: previous.team, name: previous.app, defaultBranch: '' },
        file: previous.workflow,
        workflow,
        commit: previous.commit_sha,
        ref: previous.ref,
        message: previous.commit_message,
        actor: request.actor,
        event: 'rerun',
        inputs: JSON.parse(previous.inputs) as Record<string, unknown>,
        rerunOf: previous.number,
      },
      keep,
    );
  }

  async cancel(runId: string): Promise<void> {
    const run = await this.get(runId);
    if (!run) throw notFound('run');
    if (run.status !== 'queued' && run.status !== 'running')
      throw new ValveError(
        'PIPE_RUN_NOT_CANCELLABLE',
        `run #${run.number} is already ${run.status}`,
      );
    const index = this.waiting.indexOf(runId);
    if (index >= 0) {
      this.waiting.splice(index, 1);
      await this.settleRows(runId, ['pending'], 'cancelled');
      await this.finish(run, 'cancelled', 'cancelled before it started');
      return;
    }
    this.active.get(runId)?.abort();
  }

  /** A run's approval request for a job, found by the app's names (for approvers outside the app's team). */
  async approvalOf(team: string, app: string, number: number, jobKey: string) {
    const row = await this.options.db
      .selectFrom('approvals')
      .innerJoin('runs', 'runs.id', 'approvals.run_id')
      .select(['runs.id as run_id', 'approvals.team', 'approvals.environment'])
      .where('runs.team', '=', team)
      .where('runs.app', '=', app)
      .where('runs.number', '=', number)
      .where('approvals.job_key', '=', jobKey)
      .executeTakeFirst();
    if (!row) return undefined;
    return { run: (await this.get(row.run_id))!, team: row.team, environment: row.environment };
  }

  /** The workflows at the tip of a branch, for the console's "run workflow" form. */
  async describeWorkflows(app: AppRef, ref?: string) {
    const gitDir = this.options.sourceGitDir(app.team, app.name);
    const commit = await resolveRef(
      gitDir,
      ref
        ? ref.startsWith('refs/')
          ? ref
          : `refs/heads/${ref}`
        : `refs/heads/${app.defaultBranch}`,
    );
    if (!commit) return [];
    return (await this.workflowsAt(gitDir, commit)).map(({ file, workflow, error }) => ({
      file,
      name: workflow?.name ?? file,
      triggers: workflow
        ? Object.entries(workflow.on)
            .filter(([, v]) => v !== undefined)
            .map(([k]) => k)
        : [],
      inputs: workflow?.on.workflowDispatch?.inputs ?? null,
      error: error?.message ?? null,
    }));
  }

  async decideApproval(
    run: RunRow,
    input: {
      jobKey: string;
      decision: ApprovalDecision;
      comment?: string;
      username: string;
      isMember: (team: string) => Promise<boolean>;
    },
  ): Promise<void> {
    await this.approvals.decide({ runId: run.id, appId: run.app_id, ...input });
  }

  private async enqueue(
    request: {
      app: AppRef;
      file: string;
      workflow: Workflow;
      commit: string;
      ref: string;
      message: string;
      actor: string;
      event: string;
      inputs: Record<string, unknown>;
      rerunOf?: number;
    },
    keep: PipelineTables['run_jobs'][] = [],
  ): Promise<RunRow> {
    const run = await this.createRun(request, keep);
    this.waiting.push(run.id);
    this.pump();
    return run;
  }

  private async createRun(
    request: {
      app: AppRef;
      file: string;
      workflow: Workflow | null;
      commit: string;
      ref: string;
      message: string;
      actor: string;
      event: string;
      inputs: Record<string, unknown>;
      rerunOf?: number;
    },
    keep: PipelineTables['run_jobs'][] = [],
  ): Promise<RunRow> {
    return this.options.db.transaction().execute(async (tx) => {
      const last = await tx
        .selectFrom('runs')
        .select((eb) => eb.fn.max('number').as('max'))
        .where('app_id', '=', request.app.id)
        .executeTakeFirst();
      const run: RunRow = {
        id: newId('run'),
        app_id: request.app.id,
        team: request.app.team,
        app: request.app.name,
        number: Number(last?.max ?? 0) + 1,
        workflow: request.file,
        status: 'queued',
        commit_sha: request.commit,
        ref: request.ref,
        commit_message: request.message,
        actor: request.actor,
        trigger: request.event,
        error: null,
        rerun_of: request.rerunOf ?? null,
        inputs: JSON.stringify(request.inputs),
        summary: null,
        concurrency_group: null,
        created_at: now(),
        started_at: null,
        finished_at: null,
      };
      await tx.insertInto('runs').values(run).execute();
      const workflow = request.workflow;
      if (workflow) {
        const kept = new Map(keep.map((row) => [row.job_key, row]));
        const jobs = planJobs(workflow).map((row) => {
          const previous = kept.get(row.job_key);
          return previous
            ? {
                ...row,
                run_id: run.id,
                status: 'succeeded',
                outputs: previous.outputs,
                started_at: previous.started_at,
                finished_at: previous.finished_at,
              }
            : { ...row, run_id: run.id };
        });
        await tx.insertInto('run_jobs').values(jobs).execute();
        const steps = jobs.flatMap((job) =>
          workflow.jobs[job.job_id]!.steps.map((step) => ({
            run_id: run.id,
            job_id: job.job_key,
            job_name: job.name,
            step_index: step.index,
            name: stepName(step),
            kind: step.uses ?? 'run',
            status: kept.has(job.job_key) ? 'skipped' : 'pending',
            exit_code: null,
            started_at: null,
            finished_at: null,
          })),
        );
        if (steps.length) await tx.insertInto('run_steps').values(steps).execute();
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
      void this.execute(runId, controller)
        .catch((error: unknown) => this.options.log?.warn({ err: error, runId }, 'run crashed'))
        .finally(() => {
          this.active.delete(runId);
          this.pump();
        });
    }
  }

  private async execute(runId: string, controller: AbortController): Promise<void> {
    const run = await this.get(runId);
    if (!run || run.status !== 'queued') return;
    const gitDir = this.options.sourceGitDir(run.team, run.app);
    const text = (await readFileAt(gitDir, run.commit_sha, run.workflow))?.toString() ?? '';
    const masker = new Masker();
    const log = this.options.logs.writer(run.id, masker);
    let status: RunRow['status'] = 'failed';
    let error: string | null;
    let release: (() => void) | null = null;
    try {
      const workflow = parseWorkflow(text, run.workflow, { knownSteps });
      const inputs = JSON.parse(run.inputs) as Record<string, unknown>;
      const secrets = await this.options.secrets.resolve(run.team, run.app, referencesSecret(text));
      for (const value of Object.values(secrets)) masker.add(value);
      if (workflow.concurrency) {
        const group = interpolate(workflow.concurrency.group, {
          github: {
            ref: run.ref,
            sha: run.commit_sha,
            workflow: workflow.name ?? run.workflow,
            repository: `${run.team}/${run.app}`,
            event_name: run.trigger,
          },
          inputs,
          vars: {},
        });
        await this.options.db
          .updateTable('runs')
          .set({ concurrency_group: group })
          .where('id', '=', run.id)
          .execute();
        const cancelInProgress =
          workflow.concurrency.cancelInProgress === true ||
          workflow.concurrency.cancelInProgress === 'true';
        const acquired = this.concurrency.acquire(
          `run:${run.app_id}:${group}`,
          cancelInProgress,
          () => controller.abort('concurrency'),
        );
        release = await Promise.race([
          acquired,
          new Promise<null>((resolve) =>
            controller.signal.addEventListener('abort', () => resolve(null), { once: true }),
          ),
        ]);
        if (!release) {
          log.line(
            `run #${run.number} cancelled: a newer run of concurrency group "${group}" replaced it`,
          );
          await this.settleRows(run.id, ['pending'], 'cancelled');
          await this.finish(
            run,
            'cancelled',
            `replaced by a newer run in concurrency group ${group}`,
          );
          return;
        }
      }
      const started = { ...run, status: 'running', started_at: now() };
      await this.options.db
        .updateTable('runs')
        .set({ status: 'running', started_at: started.started_at })
        .where('id', '=', runId)
        .execute();
      this.options.events.emit('run.updated', { runId, appId: run.app_id });
      log.line(
        `run #${run.number} of ${run.workflow} for ${run.commit_sha.slice(0, 12)} (${run.ref}) by ${run.actor}, event ${run.trigger}`,
      );
      const approvalFor = await this.approvalRules(gitDir, run.commit_sha);
      const result = await executeRun(
        {
          db: this.options.db,
          events: this.options.events,
          executors: this.options.executors,
          services: this.options.services,
          workspaceRoot: this.options.workspaceRoot,
          storageRoot: this.options.storageRoot,
          jobSlots: this.jobSlots,
          concurrency: this.concurrency,
          approvals: this.approvals,
        },
        { run: started, workflow, inputs, secrets, log, approvalFor },
        controller.signal,
      );
      status = result.status;
      error = result.error;
    } catch (thrown) {
      error = thrown instanceof Error ? thrown.message : String(thrown);
      log.line(`error: ${error}`);
    } finally {
      release?.();
      rmSync(join(this.options.workspaceRoot, run.id), { recursive: true, force: true });
    }
    await this.finish(run, status, status === 'succeeded' ? null : error, log);
  }

  /** Which environments need an approval, from the app spec at the run's commit. */
  private async approvalRules(gitDir: string, commit: string) {
    const text = (await readFileAt(gitDir, commit, APP_SPEC_FILE))?.toString() ?? null;
    const spec = text ? parseAppSpec(text, APP_SPEC_FILE) : null;
    const teamExists = this.options.teamExists;
    const unknown = new Set<string>();
    if (spec && teamExists) {
      const named = new Set(
        Object.values(spec.environments).flatMap((env) =>
          env.approval ? [env.approval.team] : [],
        ),
      );
      for (const team of named) if (!(await teamExists(team))) unknown.add(team);
    }
    return (environment: string) => {
      const approval = spec?.environments[environment]?.approval;
      if (!approval) return null;
      const { team, timeoutMinutes } = approval;
      return unknown.has(team)
        ? { team, timeoutMinutes, refused: unknownApprovingTeam(text, environment, team) }
        : { team, timeoutMinutes };
    };
  }

  /** Moves a run's jobs and steps that are in one of the `from` states to `to`. */
  private async settleRows(runId: string, from: string[], to: string, finishedAt?: string) {
    const update = finishedAt ? { status: to, finished_at: finishedAt } : { status: to };
    for (const table of ['run_jobs', 'run_steps'] as const) {
      await this.options.db
        .updateTable(table)
        .set(update)
        .where('run_id', '=', runId)
        .where('status', 'in', from)
        .execute();
    }
  }

  private async finish(
    run: RunRow,
    status: string,
    error: string | null,
    log = this.options.logs.writer(run.id),
  ): Promise<void> {
    await this.options.db
      .updateTable('runs')
      .set({ status, error, finished_at: now() })
      .where('id', '=', run.id)
      .execute();
    log.line(`run #${run.number} ${status}${error && status !== 'succeeded' ? `: ${error}` : ''}`);
    this.options.events.emit('run.updated', { runId: run.id, appId: run.app_id });
  }

  private async changedFiles(
    gitDir: string,
    before: string | null,
    after: string,
  ): Promise<string[] | null> {
    if (!before || before === ZERO_OID) return null;
    const { stdout, code } = await runGit(gitDir, ['diff', '--name-only', '-z', before, after], {
      okCodes: [128],
    });
    return code === 0 ? stdout.toString().split('\0').filter(Boolean) : null;
  }

  /** Starts the runs whose cron schedule came due since the last check, on each app's default branch. */
  async fireSchedules(at = new Date()): Promise<RunRow[]> {
    const runs: RunRow[] = [];
    for (const app of await this.options.listApps()) {
      const gitDir = this.options.sourceGitDir(app.team, app.name);
      const commit = await resolveRef(gitDir, `refs/heads/${app.defaultBranch}`);
      if (!commit) continue;
      for (const { file, workflow } of await this.workflowsAt(gitDir, commit)) {
        if (!workflow) continue;
        for (const cron of cronSchedules(workflow.on)) {
          const row = await this.options.db
            .selectFrom('schedules')
            .select('last_fired_at')
            .where('app_id', '=', app.id)
            .where('workflow', '=', file)
            .where('cron', '=', cron)
            .executeTakeFirst();
          if (!row) {
            // First sight of a schedule: it fires from now on, not for the past.
            await this.options.db
              .insertInto('schedules')
              .values({ app_id: app.id, workflow: file, cron, last_fired_at: at.toISOString() })
              .execute();
            continue;
          }
          const next = CronExpressionParser.parse(cron, {
            currentDate: new Date(row.last_fired_at),
            tz: 'UTC',
          })
            .next()
            .toDate();
          if (next > at) continue;
          await this.options.db
            .updateTable('schedules')
            .set({ last_fired_at: at.toISOString() })
            .where('app_id', '=', app.id)
            .where('workflow', '=', file)
            .where('cron', '=', cron)
            .execute();
          const info = await readCommit(gitDir, commit);
          runs.push(
            await this.enqueue({
              app,
              file,
              workflow,
              commit,
              ref: `refs/heads/${app.defaultBranch}`,
              message: info?.subject ?? '',
              actor: 'schedule',
              event: 'schedule',
              inputs: {},
            }),
          );
        }
      }
    }
    return runs;
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

  list(appIds: string[], filters: RunFilters = {}): Promise<RunRow[]> {
    if (appIds.length === 0) return Promise.resolve([]);
    let query = this.options.db.selectFrom('runs').selectAll().where('app_id', 'in', appIds);
    if (filters.status) query = query.where('status', '=', filters.status);
    if (filters.event) query = query.where('trigger', '=', filters.event);
    if (filters.actor) query = query.where('actor', '=', filters.actor);
    if (filters.branch) query = query.where('ref', '=', `refs/heads/${filters.branch}`);
    return query
      .orderBy('created_at', 'desc')
      .orderBy('number', 'desc')
      .limit(filters.limit ?? 50)
      .execute();
  }

  /** The combined state of the runs of one commit, as a commit status. */
  async commitStatus(appId: string, sha: string) {
    const runs = await this.options.db
      .selectFrom('runs')
      .select(['number', 'workflow', 'status'])
      .where('app_id', '=', appId)
      .where('commit_sha', 'like', `${sha}%`)
      .orderBy('number')
      .execute();
    const latest = new Map(runs.map((r) => [r.workflow, r]));
    const states = [...latest.values()].map((r) => r.status);
    const state =
      states.length === 0
        ? 'none'
        : states.some((s) => s === 'failed' || s === 'cancelled')
          ? 'failure'
          : states.every((s) => s === 'succeeded')
            ? 'success'
            : 'pending';
    return { state, runs };
  }

  /** The API's view of a run: its jobs (with approvals) and steps with their states and times. */
  async view(run: RunRow) {
    const [jobs, steps, approvals] = await Promise.all([
      this.options.db
        .selectFrom('run_jobs')
        .selectAll()
        .where('run_id', '=', run.id)
        .orderBy('position')
        .execute(),
      this.options.db
        .selectFrom('run_steps')
        .selectAll()
        .where('run_id', '=', run.id)
        .orderBy(sql`rowid`)
        .execute(),
      this.options.db.selectFrom('approvals').selectAll().where('run_id', '=', run.id).execute(),
    ]);
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
      event: run.trigger,
      rerunOf: run.rerun_of,
      inputs: JSON.parse(run.inputs) as Record<string, unknown>,
      summary: run.summary,
      createdAt: run.created_at,
      startedAt: run.started_at,
      finishedAt: run.finished_at,
      error: run.error,
      jobs: jobs.map((job) => {
        const approval = approvals.find((a) => a.job_key === job.job_key);
        return {
          key: job.job_key,
          id: job.job_id,
          name: job.name,
          matrix: job.matrix ? (JSON.parse(job.matrix) as Record<string, unknown>) : null,
          needs: (JSON.parse(job.needs) as string[]).flatMap((id) =>
            jobs.filter((j) => j.job_id === id).map((j) => j.job_key),
          ),
          runsOn: job.runs_on,
          status: job.status,
          startedAt: job.started_at,
          finishedAt: job.finished_at,
          outputs: JSON.parse(job.outputs) as Record<string, string>,
          environment: job.environment
            ? {
                name: job.environment,
                approval: approval
                  ? {
                      status: approval.status,
                      team: approval.team,
                      requestedAt: approval.requested_at,
                      expiresAt: approval.expires_at,
                      decidedBy: approval.decided_by,
                      decidedAt: approval.decided_at,
                      comment: approval.comment,
                    }
                  : null,
              }
            : null,
          steps: steps
            .filter((s) => s.job_id === job.job_key)
            .map((s) => ({
              index: s.step_index,
              name: s.name,
              kind: s.kind,
              status: s.status,
              startedAt: s.started_at,
              finishedAt: s.finished_at,
              exitCode: s.exit_code,
            })),
        };
      }),
    };
  }
}
