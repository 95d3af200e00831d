/**
 * Push-to-live, measured from the client's side as bench/push-to-live.ts does it: change the
 * sample app's VERSION, commit, `git push`, and time from the push returning to the new version
 * answering at the environment's URL, beside the run's own timestamps (queue, duration, each
 * step). The first push is a warm-up (the environment has no URL before it) and is not counted.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  api,
  git,
  runLog,
  waitFor,
  waitForRun,
  type Session,
  type Valve,
} from '../../test/e2e/harness.js';

export interface Step {
  name: string;
  kind: string;
  startedAt: string | null;
  finishedAt: string | null;
}
export interface Run {
  number: number;
  status: string;
  startedAt: string;
  finishedAt: string;
  createdAt: string;
  jobs: { steps: Step[] }[];
}

/** A sync of the environment, as the deploy history reports it. */
export interface SyncTiming {
  startedAt: number;
  finishedAt: number;
  /** The step that was running when the sync started (the pipeline's deploy step). */
  step: { name: string; startedAt: number; finishedAt: number } | null;
  /** When the run's log says the deploy commit was made (`deploy repo: committed …`). */
  committedAt: number | null;
}

export interface PushSample {
  /** `git push` returned -> the new version answers at the environment's URL. */
  total: number;
  /** `git push` returned -> the run's startedAt. */
  queue: number;
  /** The run's startedAt -> finishedAt. */
  run: number;
  /** Sum of the `run` steps' own durations: the pipeline's own commands. */
  commands: number;
  /** Each step's duration, by step name. */
  steps: Map<string, number>;
  /** When the new version first answered, and the run finished (epoch ms). */
  liveAt: number;
  runFinishedAt: number;
  /** The sync that applied this push's deploy commit; null when the history has none. */
  sync: SyncTiming | null;
}

export interface PushResults {
  url: string;
  warmUp: { total: number; gitPush: number };
  samples: PushSample[];
}

const stepMs = (step: Step) => {
  if (!step.startedAt || !step.finishedAt) throw new Error(`step ${step.name} has no timestamps`);
  return Date.parse(step.finishedAt) - Date.parse(step.startedAt);
};

/**
 * `pushes` measured pushes after one warm-up, in the clone `dir` of `app` (`team/name`). What
 * the caller committed before is pushed with the warm-up; `firstRun` is the run number the
 * warm-up push starts.
 */
export async function measurePushes(options: {
  valve: Valve;
  session: Session;
  app: string;
  dir: string;
  pushes: number;
  firstRun?: number;
  timeoutMs?: number;
  onPush?: (sample: PushSample, index: number) => void;
}): Promise<PushResults> {
  const { valve, session, app, dir, pushes } = options;
  const firstRun = options.firstRun ?? 1;
  const timeoutMs = options.timeoutMs ?? 180_000;
  const samples: PushSample[] = [];
  let url: string | undefined;
  let warmUp: PushResults['warmUp'] | undefined;
  for (let i = 0; i <= pushes; i++) {
    const version = `bench-${Date.now().toString(36)}-${i}`;
    const file = join(dir, 'greeting.js');
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(/VERSION = '[^']*'/, `VERSION = '${version}'`),
    );
    git(dir, ['commit', '-qam', version]);
    const pushStarted = performance.now();
    git(dir, ['push', '-q', 'origin', 'HEAD:main']);
    const pushed = performance.now();
    const pushedAt = Date.now();
    // Poll the address from the moment the push returns (the warm-up push has no address yet:
    // it learns it from the finished run).
    let live = 0;
    let liveAt = 0;
    const answered = url
      ? waitFor(
          `the new version of ${app}`,
          async () => (await (await fetch(url!)).text()).includes(version),
          timeoutMs,
          5,
        ).then(() => {
          live = performance.now();
          liveAt = Date.now();
        })
      : Promise.resolve();
    const number = firstRun + i;
    const run = (await waitForRun(valve, session, app, number)) as unknown as Run;
    if (run.status !== 'succeeded') {
      const log = await runLog(valve, session, app, number);
      throw new Error(
        `${app} run #${number} ${run.status}:\n${log.split('\n').slice(-30).join('\n')}`,
      );
    }
    await answered;
    if (!url) {
      const envs = await api<{ name: string; url: string | null; health: string }[]>(
        valve,
        session.token,
        'GET',
        `/api/apps/${app}/environments`,
      );
      const found = envs.body.find((env) => env.url);
      if (!found?.url)
        throw new Error(`${app} has no environment URL: ${JSON.stringify(envs.body)}`);
      url = found.url;
      await waitFor(
        `the warm-up version of ${app}`,
        async () => (await (await fetch(url!)).text()).includes(version),
        timeoutMs,
        5,
      );
      live = performance.now();
    }
    if (i === 0) {
      warmUp = { total: live - pushed, gitPush: pushed - pushStarted };
      continue;
    }
    const steps = run.jobs.flatMap((job) => job.steps);
    const sync = await syncOf(valve, session, app, run, steps);
    const sample: PushSample = {
      total: live - pushed,
      queue: Date.parse(run.startedAt) - pushedAt,
      run: Date.parse(run.finishedAt) - Date.parse(run.startedAt),
      commands: steps.filter((s) => s.kind === 'run').reduce((sum, s) => sum + stepMs(s), 0),
      steps: new Map(steps.map((s) => [s.name, stepMs(s)])),
      liveAt,
      runFinishedAt: Date.parse(run.finishedAt),
      sync,
    };
    samples.push(sample);
    options.onPush?.(sample, i);
  }
  return { url: url!, warmUp: warmUp!, samples };
}

interface SyncView {
  status: string;
  trigger: string | null;
  startedAt: string;
  finishedAt: string | null;
}

/** The environment's newest succeeded sync that started during the run, with the step it ran under. */
async function syncOf(
  valve: Valve,
  session: Session,
  app: string,
  run: Run,
  steps: Step[],
): Promise<SyncTiming | null> {
  const envs = await api<{ name: string }[]>(
    valve,
    session.token,
    'GET',
    `/api/apps/${app}/environments`,
  );
  const from = Date.parse(run.startedAt);
  const to = Date.parse(run.finishedAt);
  for (const env of envs.body) {
    const history = await api<{ syncs: SyncView[] }>(
      valve,
      session.token,
      'GET',
      `/api/apps/${app}/environments/${env.name}/history?limit=10`,
    );
    const sync = history.body.syncs.find(
      (s) =>
        s.status === 'succeeded' &&
        s.finishedAt &&
        Date.parse(s.startedAt) >= from &&
        Date.parse(s.startedAt) <= to,
    );
    if (!sync) continue;
    const startedAt = Date.parse(sync.startedAt);
    const step = steps.find(
      (s) =>
        s.startedAt &&
        s.finishedAt &&
        Date.parse(s.startedAt) <= startedAt &&
        startedAt <= Date.parse(s.finishedAt),
    );
    const log = await api<{ ts: string; text: string }[]>(
      valve,
      session.token,
      'GET',
      `/api/apps/${app}/runs/${run.number}/logs`,
    );
    const committed = log.body.find((line) => line.text.startsWith('deploy repo: committed'));
    return {
      startedAt,
      finishedAt: Date.parse(sync.finishedAt!),
      committedAt: committed ? Date.parse(committed.ts) : null,
      step: step
        ? {
            name: step.name,
            startedAt: Date.parse(step.startedAt!),
            finishedAt: Date.parse(step.finishedAt!),
          }
        : null,
    };
  }
  return null;
}
