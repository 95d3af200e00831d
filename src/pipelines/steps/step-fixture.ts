import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JobStatus, PostStep, StepContext, StepServices } from './step.js';

/**
 * A real step context for tests: temp directories for the workspace and storage, and the
 * log, summary and post steps captured. Not used by the runner.
 */
export interface StepFixture {
  context: StepContext;
  /** Parent of everything below; removed by `cleanup`. */
  root: string;
  logs: string[];
  summaries: string[];
  postSteps: { name: string; fn: PostStep }[];
  /** Runs the registered post steps in reverse order, as the runner does at the job's end. */
  endJob(status: JobStatus): Promise<void>;
  /** Another job of the same run: a fresh workspace, the same artifacts and cache dirs. */
  nextJob(jobKey: string): Promise<StepFixture>;
  cleanup(): Promise<void>;
}

export interface FixtureOptions {
  services?: Partial<StepServices>;
  run?: Partial<StepContext['run']>;
  env?: Record<string, string>;
  signal?: AbortSignal;
}

export async function stepFixture(options: FixtureOptions = {}): Promise<StepFixture> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'valve-step-fixture-'));
  return fixtureIn(root, 'build', options);
}

async function fixtureIn(
  root: string,
  jobKey: string,
  options: FixtureOptions,
): Promise<StepFixture> {
  const run: StepContext['run'] = {
    id: 'run-1',
    number: 7,
    team: 'acme',
    app: 'shop',
    commit: 'c0ffee'.padEnd(40, '0'),
    ref: 'refs/heads/main',
    actor: 'alice',
    workflow: 'ci.yml',
    jobKey,
    ...options.run,
  };
  const workspace = path.join(root, 'workspaces', jobKey);
  const storage = {
    cache: path.join(root, 'data', 'pipelines', 'cache', run.team, run.app),
    artifacts: path.join(root, 'data', 'pipelines', 'artifacts', run.id),
  };
  for (const dir of [workspace, storage.cache, storage.artifacts]) {
    await mkdir(dir, { recursive: true });
  }
  const logs: string[] = [];
  const summaries: string[] = [];
  const postSteps: StepFixture['postSteps'] = [];
  const unavailable = (name: string) => () => {
    throw new Error(`the test fixture has no ${name} service`);
  };
  const services = {
    get git() {
      return unavailable('git')();
    },
    get registry() {
      return unavailable('registry')();
    },
    get deploy() {
      return unavailable('deploy')();
    },
    registryHost: () => '127.0.0.1:1',
    ...options.services,
  } as StepServices;
  const context: StepContext = {
    workspace,
    run,
    signal: options.signal ?? new AbortController().signal,
    services,
    storage,
    env: { ...options.env },
    log: (text) => logs.push(text),
    summary: (markdown) => summaries.push(markdown),
    addPostStep: (name, fn) => postSteps.push({ name, fn }),
  };
  return {
    context,
    root,
    logs,
    summaries,
    postSteps,
    async endJob(status) {
      for (const { fn } of [...postSteps].reverse()) await fn({ status });
    },
    nextJob: (nextKey) => fixtureIn(root, nextKey, options),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}
