import type { z } from 'zod';
import type { DeployService } from '../../deploy/index.js';
import type { GitService } from '../../git/index.js';
import type { Registry } from '../../registry/index.js';

/** What a built-in step may use: other subsystems through their public interfaces. */
export interface StepServices {
  git: GitService;
  registry: Registry;
  deploy: DeployService;
  /** host:port under which the registry is reached, used in image references. */
  registryHost(): string;
}

/** How the job ended, as post steps see it (GitHub's `job.status`). */
export const jobStatuses = ['success', 'failure', 'cancelled'] as const;
export type JobStatus = (typeof jobStatuses)[number];

/**
 * Work a step leaves for the end of its job (like `post:` of an action): the runner calls it
 * after the last step, even when a step failed or the run was cancelled, in reverse order of
 * registration.
 */
export type PostStep = (job: { status: JobStatus }) => Promise<void>;

export interface StepContext {
  /** Host path of the job's workspace. */
  workspace: string;
  run: {
    id: string;
    number: number;
    team: string;
    app: string;
    commit: string;
    ref: string;
    actor: string;
    workflow: string;
    jobKey: string;
  };
  signal: AbortSignal;
  services: StepServices;
  /** Host directories the runner owns; steps keep their layout inside them. */
  storage: {
    /** `<data>/pipelines/cache/<team>/<app>`: shared by every run of the app. */
    cache: string;
    /** `<data>/pipelines/artifacts/<runId>`: shared by the jobs of one run. */
    artifacts: string;
  };
  /** The step's environment after interpolation. */
  env: Record<string, string>;
  log(text: string): void;
  /** Appended to the run's summary (shown in the console and the CLI). */
  summary(markdown: string): void;
  addPostStep(name: string, fn: PostStep): void;
}

/** A built-in step, `uses: valve/<name>@v1`: its `with` inputs schema and what it does. */
export interface BuiltinStep<I extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  inputs: I;
  run(context: StepContext, inputs: z.infer<I>): Promise<Record<string, string>>;
}

export const defineStep = <I extends z.ZodType>(step: BuiltinStep<I>) => step;
