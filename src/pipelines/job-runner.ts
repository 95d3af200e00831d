/**
 * Running one job (one matrix instance of it): an executor session, its steps in order with
 * their `if` conditions, `continue-on-error`, timeouts, file commands and composite actions,
 * then the job's post steps and outputs. Every state change is persisted before it is published.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { globSync } from 'tinyglobby';
import { loadCompositeAction } from './actions.js';
import { describeZodErrorPlain } from './describe.js';
import type { Executor, JobSession } from './executors/executor.js';
import {
  evaluate,
  evaluateCondition,
  interpolate,
  truthy as expressionTruthy,
  type ExpressionContext,
  type ExpressionFunctions,
} from './expressions/index.js';
import { stepFiles } from './file-commands.js';
import type { RunLogWriter } from './logs.js';
import { builtinSteps, type StepServices } from './steps/index.js';
import type { Job, Step, Workflow } from './workflow.js';

export type JobStatus = 'succeeded' | 'failed' | 'cancelled' | 'skipped';
export type StepStatus = JobStatus | 'running';

export interface JobRun {
  key: string;
  job: Job;
  matrix: Record<string, unknown> | null;
  strategy: {
    'fail-fast': boolean;
    'job-index': number;
    'job-total': number;
    'max-parallel': number;
  };
  needs: Record<string, { result: string; outputs: Record<string, string> }>;
}

export interface JobRunnerContext {
  run: {
    id: string;
    number: number;
    team: string;
    app: string;
    commit: string;
    ref: string;
    actor: string;
    workflow: string;
    event: string;
  };
  workflow: Workflow;
  inputs: Record<string, unknown>;
  /** Decrypted secrets the workflow references (already added to the log's masker). */
  secrets: Record<string, string>;
  log: RunLogWriter;
  executor: Executor;
  services: StepServices;
  jobDir: string;
  storage: { cache: string; artifacts: string };
  summary(markdown: string): void;
  setStep(
    index: number,
    update: {
      status: StepStatus;
      exitCode?: number | null;
      startedAt?: string;
      finishedAt?: string;
    },
  ): Promise<void>;
}

// Only these variables of the server's own environment reach steps: never its secrets.
const passedThrough = ['PATH', 'HOME', 'USER', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'SHELL'];
const DEFAULT_TIMEOUT_MINUTES = 360;
const MAX_COMPOSITE_DEPTH = 5;

type StepOutcome = {
  status: 'succeeded' | 'failed' | 'cancelled';
  outputs: Record<string, string>;
  exitCode: number;
  error?: string;
};
type PostStep = {
  name: string;
  fn: (job: { status: 'success' | 'failure' | 'cancelled' }) => Promise<void>;
};

export async function runJob(
  ctx: JobRunnerContext,
  jobRun: JobRun,
  signal: AbortSignal,
): Promise<{ status: JobStatus; outputs: Record<string, string>; error: string | null }> {
  const { job } = jobRun;
  const workspace = join(ctx.jobDir, 'workspace');
  const temp = join(ctx.jobDir, 'temp');
  rmSync(ctx.jobDir, { recursive: true, force: true });
  mkdirSync(workspace, { recursive: true });
  mkdirSync(temp, { recursive: true });

  const steps: Record<
    string,
    { outputs: Record<string, string>; outcome: string; conclusion: string }
  > = {};
  const github = githubContext(ctx, workspace, job.id);
  const base = Object.fromEntries(
    passedThrough.flatMap((name) => (process.env[name] ? [[name, process.env[name]!]] : [])),
  );
  let jobFailed = false;
  const isCancelled = () => signal.aborted;
  const functions = (): ExpressionFunctions => ({
    success: () => !jobFailed && !isCancelled(),
    failure: () => jobFailed,
    always: () => true,
    cancelled: isCancelled,
    hashFiles: (...patterns: string[]) => hashFiles(workspace, patterns),
  });
  const expressionContext = (
    env: Record<string, string>,
    extra: ExpressionContext = {},
  ): ExpressionContext => ({
    github,
    env,
    vars: {},
    job: { status: isCancelled() ? 'cancelled' : jobFailed ? 'failure' : 'success' },
    steps,
    runner: {
      os: 'Linux',
      arch: process.arch === 'arm64' ? 'ARM64' : 'X64',
      name: 'valve',
      temp,
      tool_cache: join(temp, 'tools'),
    },
    strategy: jobRun.strategy,
    matrix: jobRun.matrix ?? {},
    needs: jobRun.needs,
    inputs: ctx.inputs,
    secrets: ctx.secrets,
    ...extra,
  });

  // Job-level values can use these contexts (env is the workflow's, then the job's).
  const jobEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...ctx.workflow.env, ...job.env }))
    jobEnv[name] = interpolate(value, expressionContext({ ...jobEnv }));
  const timeoutValue =
    job.timeoutMinutes === undefined
      ? DEFAULT_TIMEOUT_MINUTES
      : Number(
          typeof job.timeoutMinutes === 'string'
            ? evaluate(job.timeoutMinutes, expressionContext(jobEnv))
            : job.timeoutMinutes,
        );
  const deadline =
    Date.now() +
    (Number.isFinite(timeoutValue) && timeoutValue > 0 ? timeoutValue : DEFAULT_TIMEOUT_MINUTES) *
      60_000;
  const timeout = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
  const jobSignal = AbortSignal.any([signal, timeout]);
  const stepCancelled = () => jobSignal.aborted;

  let session: JobSession;
  try {
    session = await ctx.executor.prepareJob({
      runId: ctx.run.id,
      jobKey: jobRun.key,
      workspace: ctx.jobDir,
      container: job.container && interpolateService(job.container, expressionContext(jobEnv)),
      services: Object.fromEntries(
        Object.entries(job.services).map(([name, spec]) => [
          name,
          interpolateService(spec, expressionContext(jobEnv)),
        ]),
      ),
      log: (line) => ctx.log.line(line, `${jobRun.key}/setup`),
      signal: jobSignal,
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    ctx.log.line(
      `error: could not set up the job on ${ctx.executor.name}: ${message}`,
      `${jobRun.key}/setup`,
    );
    for (const step of job.steps) await ctx.setStep(step.index, { status: 'skipped' });
    return {
      status: signal.aborted ? 'cancelled' : 'failed',
      outputs: {},
      error: `${jobRun.key}: setup: ${message}`,
    };
  }

  const post: PostStep[] = [];
  const env = { ...jobEnv };
  const path: string[] = [];
  let failure: string | null = null;

  /** Runs a list of steps (the job's, or a composite action's); returns false when one failed. */
  const runSteps = async (
    list: Step[],
    scope: {
      keyPrefix: string;
      env: Record<string, string>;
      inputs?: Record<string, string>;
      depth: number;
      record: boolean;
    },
  ) => {
    const scopeSteps: typeof steps = scope.record ? steps : {};
    for (const step of list) {
      const stepKey = `${jobRun.key}/${scope.keyPrefix}${step.index}`;
      const name = stepName(step);
      const context = () =>
        expressionContext(
          { ...env, ...scope.env },
          scope.inputs ? { inputs: scope.inputs, steps: scopeSteps } : { steps: scopeSteps },
        );
      let run = false;
      try {
        run = !stepCancelled() && evaluateCondition(step.if, context(), functions());
      } catch (error) {
        ctx.log.line(
          `error: if: ${error instanceof Error ? error.message : String(error)}`,
          stepKey,
        );
        jobFailed = true;
        failure ??= `${jobRun.key}: ${name}: if: ${error instanceof Error ? error.message : String(error)}`;
      }
      if (!run) {
        if (scope.record)
          await ctx.setStep(step.index, { status: stepCancelled() ? 'cancelled' : 'skipped' });
        if (step.id)
          scopeSteps[step.id] = { outputs: {}, outcome: 'skipped', conclusion: 'skipped' };
        continue;
      }
      ctx.log.line(`▶ ${name}`, stepKey);
      if (scope.record)
        await ctx.setStep(step.index, { status: 'running', startedAt: new Date().toISOString() });
      const outcome = await runStep(step, stepKey, context, { ...env, ...scope.env }, scope.depth);
      const continueOnError =
        outcome.status === 'failed' && isTrue(step.continueOnError, context());
      if (outcome.error)
        for (const line of outcome.error.split('\n')) ctx.log.line(`error: ${line}`, stepKey);
      if (continueOnError) ctx.log.line('continue-on-error: the job goes on', stepKey);
      if (outcome.status === 'failed' && !continueOnError) {
        jobFailed = true;
        failure ??= `${jobRun.key}: ${name}: ${(outcome.error ?? 'failed').split('\n')[0]}`;
      }
      const conclusion = continueOnError
        ? 'success'
        : outcome.status === 'succeeded'
          ? 'success'
          : outcome.status === 'cancelled'
            ? 'cancelled'
            : 'failure';
      if (step.id)
        scopeSteps[step.id] = {
          outputs: outcome.outputs,
          outcome:
            outcome.status === 'succeeded'
              ? 'success'
              : outcome.status === 'cancelled'
                ? 'cancelled'
                : 'failure',
          conclusion,
        };
      if (scope.record)
        await ctx.setStep(step.index, {
          status: outcome.status,
          exitCode: outcome.exitCode,
          finishedAt: new Date().toISOString(),
        });
    }
    return scopeSteps;
  };

  const runStep = async (
    step: Step,
    stepKey: string,
    context: () => ExpressionContext,
    scopeEnv: Record<string, string>,
    depth: number,
  ): Promise<StepOutcome> => {
    try {
      const stepEnv: Record<string, string> = {};
      for (const [k, v] of Object.entries({ ...scopeEnv, ...step.env }))
        stepEnv[k] = interpolate(v, context());
      const stepTimeout =
        step.timeoutMinutes === undefined
          ? Infinity
          : Number(
              typeof step.timeoutMinutes === 'string'
                ? evaluate(step.timeoutMinutes, context())
                : step.timeoutMinutes,
            ) * 60_000;
      const timeoutMs = Math.max(1, Math.min(deadline - Date.now(), stepTimeout));
      if (step.run !== undefined) {
        const files = stepFiles(temp, stepKey);
        try {
          const cwd = resolve(
            workspace,
            interpolate(
              step.workingDirectory ??
                job.defaults.workingDirectory ??
                ctx.workflow.defaults.workingDirectory ??
                '.',
              context(),
            ),
          );
          if (cwd !== workspace && !cwd.startsWith(`${workspace}/`))
            return {
              status: 'failed',
              outputs: {},
              exitCode: 1,
              error: `working-directory is outside the workspace`,
            };
          mkdirSync(cwd, { recursive: true });
          const lines = ctx.log.lineSplitter(stepKey);
          const result = await session.runScript({
            script: interpolate(step.run, context()),
            shell: step.shell ?? job.defaults.shell ?? ctx.workflow.defaults.shell ?? 'default',
            cwd,
            env: {
              ...base,
              ...(path.length ? { PATH: [...path, base.PATH ?? ''].join(':') } : {}),
              CI: 'true',
              VALVE: 'true',
              ...githubEnv(github),
              RUNNER_TEMP: temp,
              RUNNER_OS: 'Linux',
              ...stepEnv,
              ...files.env,
            },
            timeoutMs,
            signal: jobSignal,
            onOutput: (chunk) => lines.write(chunk),
          });
          lines.flush();
          const produced = files.read();
          Object.assign(env, produced.env);
          path.unshift(...produced.path.reverse());
          if (produced.summary.trim()) ctx.summary(produced.summary);
          if (result.stopped === 'timeout' || (timeout.aborted && !signal.aborted)) {
            return {
              status: 'failed',
              outputs: produced.outputs,
              exitCode: result.exitCode,
              error: `timed out after ${Math.round(timeoutMs / 1000)} s; its processes were killed`,
            };
          }
          if (result.stopped === 'cancelled' || signal.aborted)
            return {
              status: 'cancelled',
              outputs: produced.outputs,
              exitCode: result.exitCode,
              error: 'cancelled',
            };
          if (result.exitCode !== 0)
            return {
              status: 'failed',
              outputs: produced.outputs,
              exitCode: result.exitCode,
              error: `exited with code ${result.exitCode}`,
            };
          return { status: 'succeeded', outputs: produced.outputs, exitCode: 0 };
        } finally {
          files.remove();
        }
      }
      const withInputs = Object.fromEntries(
        Object.entries(step.with).map(([k, v]) => [k, interpolate(v, context())]),
      );
      if (step.uses!.startsWith('./'))
        return await runComposite(step, stepKey, withInputs, stepEnv, depth);
      return await runBuiltin(step, stepKey, withInputs, stepEnv);
    } catch (error) {
      return {
        status: jobSignal.aborted && signal.aborted ? 'cancelled' : 'failed',
        outputs: {},
        exitCode: 1,
        error: error instanceof Error ? error.message : String(error),
      };
    }
  };

  const runBuiltin = async (
    step: Step,
    stepKey: string,
    withInputs: Record<string, string>,
    stepEnv: Record<string, string>,
  ): Promise<StepOutcome> => {
    const name = /^valve\/([a-z-]+)@/.exec(step.uses!)?.[1] ?? '';
    const builtin = builtinSteps.get(name);
    if (!builtin)
      return {
        status: 'failed',
        outputs: {},
        exitCode: 1,
        error: `unknown built-in step ${step.uses}`,
      };
    const parsed = builtin.inputs.safeParse(withInputs);
    if (!parsed.success)
      return {
        status: 'failed',
        outputs: {},
        exitCode: 1,
        error: `${step.uses}: ${describeZodErrorPlain(parsed.error, 'with')}`,
      };
    const outputs = await builtin.run(
      {
        workspace,
        run: {
          id: ctx.run.id,
          number: ctx.run.number,
          team: ctx.run.team,
          app: ctx.run.app,
          commit: ctx.run.commit,
          ref: ctx.run.ref,
          actor: ctx.run.actor,
          workflow: ctx.run.workflow,
          jobKey: jobRun.key,
        },
        signal: jobSignal,
        services: ctx.services,
        storage: ctx.storage,
        env: stepEnv,
        log: (text) => ctx.log.line(text, stepKey),
        summary: (markdown) => ctx.summary(markdown),
        addPostStep: (postName, fn) => post.push({ name: postName, fn }),
      },
      parsed.data,
    );
    return { status: 'succeeded', outputs, exitCode: 0 };
  };

  const runComposite = async (
    step: Step,
    stepKey: string,
    withInputs: Record<string, string>,
    stepEnv: Record<string, string>,
    depth: number,
  ): Promise<StepOutcome> => {
    if (depth >= MAX_COMPOSITE_DEPTH)
      return {
        status: 'failed',
        outputs: {},
        exitCode: 1,
        error: `composite actions nest deeper than ${MAX_COMPOSITE_DEPTH}`,
      };
    const action = loadCompositeAction(workspace, step.uses!);
    const inputs: Record<string, string> = {};
    for (const [name, spec] of Object.entries(action.inputs)) {
      const value = withInputs[name] ?? spec.default;
      if (value === undefined && spec.required)
        return {
          status: 'failed',
          outputs: {},
          exitCode: 1,
          error: `${action.file}: input "${name}" is required`,
        };
      inputs[name] = value ?? '';
    }
    const unknown = Object.keys(withInputs).filter((name) => !(name in action.inputs));
    if (unknown.length)
      ctx.log.line(`warning: ${action.file} has no input ${unknown.join(', ')}`, stepKey);
    const failedBefore = jobFailed;
    const inner = await runSteps(action.steps, {
      keyPrefix: `${stepKey.split('/').pop()}.`,
      env: stepEnv,
      inputs,
      depth: depth + 1,
      record: false,
    });
    const failed = jobFailed && !failedBefore;
    const outputs = Object.fromEntries(
      Object.entries(action.outputs).map(([name, value]) => [
        name,
        interpolate(value, expressionContext({ ...env, ...stepEnv }, { inputs, steps: inner })),
      ]),
    );
    if (failed) jobFailed = failedBefore;
    return failed
      ? { status: 'failed', outputs, exitCode: 1, error: `a step of ${action.file} failed` }
      : { status: 'succeeded', outputs, exitCode: 0 };
  };

  try {
    await runSteps(job.steps, { keyPrefix: '', env: {}, depth: 0, record: true });
  } finally {
    const status = signal.aborted ? 'cancelled' : jobFailed ? 'failure' : 'success';
    for (const { name, fn } of post.reverse()) {
      try {
        ctx.log.line(`▶ Post ${name}`, `${jobRun.key}/post`);
        await fn({ status });
      } catch (error) {
        ctx.log.line(
          `warning: post step ${name} failed: ${error instanceof Error ? error.message : String(error)}`,
          `${jobRun.key}/post`,
        );
      }
    }
    await session
      .close()
      .catch((error: unknown) =>
        ctx.log.line(
          `warning: cleaning up the job failed: ${String(error)}`,
          `${jobRun.key}/cleanup`,
        ),
      );
  }

  let outputs: Record<string, string> = {};
  try {
    outputs = Object.fromEntries(
      Object.entries(job.outputs).map(([name, value]) => [
        name,
        interpolate(value, expressionContext(env)),
      ]),
    );
  } catch (error) {
    jobFailed = true;
    failure ??= `${jobRun.key}: outputs: ${error instanceof Error ? error.message : String(error)}`;
  }
  rmSync(ctx.jobDir, { recursive: true, force: true });
  if (signal.aborted) return { status: 'cancelled', outputs, error: 'cancelled' };
  if (timeout.aborted)
    return { status: 'failed', outputs, error: failure ?? `${jobRun.key}: timed out` };
  return { status: jobFailed ? 'failed' : 'succeeded', outputs, error: failure };
}

export function stepName(step: Step): string {
  if (step.name) return step.name;
  if (step.uses) return `Run ${step.uses}`;
  return `Run ${step.run?.split('\n')[0]?.slice(0, 60) || `step ${step.index + 1}`}`;
}

/** `continue-on-error`: a boolean, or an expression judged by GitHub's truthiness. */
function isTrue(value: boolean | string, context: ExpressionContext): boolean {
  if (typeof value === 'boolean') return value;
  return expressionTruthy(evaluate(value, context));
}

function interpolateService<
  T extends {
    image: string;
    env?: Record<string, string>;
    options?: string;
    ports?: string[];
    credentials?: { username: string; password: string };
  },
>(spec: T, context: ExpressionContext): T {
  return {
    ...spec,
    image: interpolate(spec.image, context),
    env:
      spec.env &&
      Object.fromEntries(Object.entries(spec.env).map(([k, v]) => [k, interpolate(v, context)])),
    credentials: spec.credentials && {
      username: interpolate(spec.credentials.username, context),
      password: interpolate(spec.credentials.password, context),
    },
  };
}

function githubContext(ctx: JobRunnerContext, workspace: string, jobId: string) {
  return {
    sha: ctx.run.commit,
    ref: ctx.run.ref,
    ref_name: ctx.run.ref.replace(/^refs\/(heads|tags)\//, ''),
    ref_type: ctx.run.ref.startsWith('refs/tags/') ? 'tag' : 'branch',
    repository: `${ctx.run.team}/${ctx.run.app}`,
    repository_owner: ctx.run.team,
    actor: ctx.run.actor,
    triggering_actor: ctx.run.actor,
    run_id: ctx.run.id,
    run_number: String(ctx.run.number),
    run_attempt: '1',
    workflow: ctx.workflow.name ?? ctx.run.workflow,
    event_name: ctx.run.event,
    event: { inputs: ctx.inputs },
    workspace,
    job: jobId,
  };
}

function githubEnv(github: ReturnType<typeof githubContext>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(github)
      .filter(([, v]) => typeof v === 'string')
      .map(([k, v]) => [`GITHUB_${k.toUpperCase()}`, v as string]),
  );
}

/** GitHub's hashFiles: the SHA-256 of the files' SHA-256s, in path order; '' when nothing matches. */
export function hashFiles(workspace: string, patterns: string[]): string {
  const files = globSync(patterns, { cwd: workspace, onlyFiles: true, dot: false }).sort();
  if (files.length === 0) return '';
  const outer = createHash('sha256');
  for (const file of files)
    outer.update(
      createHash('sha256')
        .update(readFileSync(join(workspace, file)))
        .digest(),
    );
  return outer.digest('hex');
}
