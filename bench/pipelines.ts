/**
 * The CI engine's own cost, on the local executor.
 *
 * Overhead: a workflow of 10 jobs x 10 trivial steps (`run: "true"`, no checkout), once as 10
 * independent jobs and once as a `needs` chain of 10, each started by one dispatch call and timed
 * from the run's API timestamps and from the client's side (dispatch sent -> the run's log stream
 * says it ended). Beside it, the same 100 commands as one bash script and as 100 separate bash
 * processes: the first is the work itself, the second separates the cost of spawning a process
 * per step from the platform's own cost.
 *
 * Queue under load: N runs of a small workflow (2 jobs x 3 steps, one `sleep 0.2` each)
 * dispatched at once; how long they take to drain, how many run at once, and the server
 * process's memory meanwhile (VmRSS sampled every 200 ms, VmHWM at the end); then the same for
 * N/5, to show memory does not grow with the length of the queue.
 *
 *   npm run bench:pipelines -- [--runs 50] [--repeat 3]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  api,
  cloneUrl,
  git,
  runLog,
  signup,
  startValve,
  waitFor,
  waitForRun,
  type Session,
  type Valve,
} from '../test/e2e/harness.js';

interface Step {
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
}
interface Job {
  key: string;
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
  steps: Step[];
}
interface Run {
  number: number;
  status: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  jobs: Job[];
}

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '50' },
    repeat: { type: 'string', default: '3' },
  },
});
const positive = (text: string, flag: string) => {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} must be a positive integer`);
  return value;
};
const loadRuns = positive(args.runs, '--runs');
const repeat = positive(args.repeat, '--repeat');

const APP = 'dev/bench';
const JOBS = 10;
const STEPS_PER_JOB = 10;
const COMMANDS = JOBS * STEPS_PER_JOB;
/** The cheap baselines are noisy at a few milliseconds, so they take more samples. */
const BASELINE_SAMPLES = repeat * 10;
const MAX_PARALLEL = 4;
/** How Valve runs a `run` step (docs/workflows.md); the baselines use the same shell. */
const BASH = ['--noprofile', '--norc', '-eo', 'pipefail', '-c'];
const FINISHED = ['succeeded', 'failed', 'cancelled'];
const RUN_TIMEOUT_MS = 300_000;
const LOAD_TIMEOUT_MS = 120_000;

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const time = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
const ratio = (a: number, b: number) => `${(a / b).toFixed(1)}x`;
const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
const at = (iso: string | null) => {
  if (!iso) throw new Error('a finished run is missing a timestamp');
  return Date.parse(iso);
};

const workflows = {
  'independent.yml': tenJobs(false),
  'chain.yml': tenJobs(true),
  'load.yml': `on:\n  workflow_dispatch: {}\njobs:\n${['a', 'b']
    .map(
      (id) =>
        `  ${id}:\n    steps:\n      - run: echo start\n      - run: sleep 0.2\n      - run: echo done\n`,
    )
    .join('')}`,
};
const shapes = [
  { workflow: 'independent.yml', label: `${JOBS} independent jobs` },
  { workflow: 'chain.yml', label: `needs chain of ${JOBS}` },
] as const;

function tenJobs(chain: boolean): string {
  const steps = '      - run: "true"\n'.repeat(STEPS_PER_JOB);
  let text = 'on:\n  workflow_dispatch: {}\njobs:\n';
  for (let j = 1; j <= JOBS; j++) {
    text += `  j${j}:\n${chain && j > 1 ? `    needs: j${j - 1}\n` : ''}    steps:\n${steps}`;
  }
  return text;
}

interface Measured {
  /** Dispatch sent -> the client learns the run finished. */
  client: number;
  /** The dispatch call's own round trip. */
  dispatchCall: number;
  /** createdAt -> finishedAt. */
  api: number;
  /** createdAt -> startedAt. */
  queued: number;
  /** Sum of the steps' own durations (each includes spawning its shell). */
  steps: number;
}

async function dispatch(valve: Valve, session: Session, workflow: string): Promise<number> {
  const response = await api<Run>(valve, session.token, 'POST', `/api/apps/${APP}/dispatch`, {
    workflow,
  });
  if (response.status !== 201)
    throw new Error(`dispatch ${workflow}: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body.number;
}

/**
 * Waits on the run's log stream, which ends as soon as the server has the run finished, so the
 * client's view is not rounded up to a polling interval; falls back to polling if it ends early.
 */
async function untilFinished(
  valve: Valve,
  session: Session,
  number: number,
): Promise<{ run: Run; seenAt: number }> {
  const path = `/api/apps/${APP}/runs/${number}`;
  const stream = await fetch(new URL(`${path}/logs?follow=1`, valve.url), {
    headers: { authorization: `Bearer ${session.token}` },
    signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
  });
  const ended = stream.ok && (await stream.text()).includes('event: end');
  const seenAt = performance.now();
  const run = await api<Run>(valve, session.token, 'GET', path);
  if (ended && FINISHED.includes(run.body.status)) return { run: run.body, seenAt };
  const polled = (await waitForRun(valve, session, APP, number)) as unknown as Run;
  return { run: polled, seenAt: performance.now() };
}

async function succeeded(valve: Valve, session: Session, run: Run): Promise<Run> {
  if (run.status !== 'succeeded')
    throw new Error(
      `run #${run.number} ${run.status}:\n${await runLog(valve, session, APP, run.number)}`,
    );
  return run;
}

async function measureRun(valve: Valve, session: Session, workflow: string): Promise<Measured> {
  const sent = performance.now();
  const number = await dispatch(valve, session, workflow);
  const accepted = performance.now();
  const { run, seenAt } = await untilFinished(valve, session, number);
  await succeeded(valve, session, run);
  const steps = run.jobs.flatMap((j) => j.steps);
  if (steps.length !== COMMANDS)
    throw new Error(`run #${number} has ${steps.length} steps, expected ${COMMANDS}`);
  return {
    client: seenAt - sent,
    dispatchCall: accepted - sent,
    api: at(run.finishedAt) - at(run.createdAt),
    queued: at(run.startedAt) - at(run.createdAt),
    steps: steps.reduce((sum, s) => sum + at(s.finishedAt) - at(s.startedAt), 0),
  };
}

function bash(script: string): void {
  const result = spawnSync('bash', [...BASH, script], { stdio: 'ignore' });
  if (result.status !== 0) throw new Error(`bash exited ${result.status}: ${script.slice(0, 40)}`);
}

/** The 100 commands as one script: the work itself. */
function oneScript(): number {
  const script = Array.from({ length: COMMANDS }, () => 'true').join('\n');
  const started = performance.now();
  bash(script);
  return performance.now() - started;
}

/** The 100 commands as 100 processes, one after another: what spawning a shell per step costs. */
function separateSpawns(): number {
  const started = performance.now();
  for (let i = 0; i < COMMANDS; i++) bash('true');
  return performance.now() - started;
}

function memoryKb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!match) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(match[1]);
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux `clear_refs` 5), so each load phase has its own peak. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false; // Not allowed here: VmHWM then counts from the server's start.
  }
}

/** The most intervals open at one instant (an end at the same instant as a start comes first). */
function maxOverlap(intervals: [number, number][]): number {
  const edges = intervals
    .flatMap(([start, end]): [number, number][] => [
      [start, 1],
      [end, -1],
    ])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let max = 0;
  for (const [, delta] of edges) max = Math.max(max, (open += delta));
  return max;
}

interface Load {
  runs: number;
  dispatchCalls: number;
  /** First dispatch sent -> the last run's finishedAt. */
  total: number;
  /** First dispatch sent -> a poll sees nothing queued or running. */
  drained: number;
  maxRunningPolled: number;
  maxRunning: number;
  maxJobs: number;
  queueWaitMedian: number;
  queueWaitMax: number;
  idleRss: number;
  peakRss: number;
  samples: number;
  hwm: number;
  hwmSinceStart: boolean;
}

async function underLoad(valve: Valve, session: Session, n: number): Promise<Load> {
  const pid = valve.child.pid;
  if (pid === undefined) throw new Error('the server has no pid');
  const idleRss = memoryKb(pid).rss;
  const hwmSinceStart = !resetPeak(pid);
  let peakRss = idleRss;
  let samples = 0;
  let samplingFailed: unknown;
  const sampler = setInterval(() => {
    try {
      peakRss = Math.max(peakRss, memoryKb(pid).rss);
      samples++;
    } catch (error) {
      samplingFailed ??= error; // The server is gone; reported once the phase ends.
    }
  }, 200);
  try {
    const sent = performance.now();
    const sentAt = Date.now();
    const numbers = await Promise.all(
      Array.from({ length: n }, () => dispatch(valve, session, 'load.yml')),
    );
    const dispatchCalls = performance.now() - sent;
    const list = (status: string, limit: number) =>
      api<Run[]>(
        valve,
        session.token,
        'GET',
        `/api/apps/${APP}/runs?status=${status}&limit=${limit}`,
      );
    let maxRunningPolled = 0;
    await waitFor(
      `${n} runs to finish`,
      async () => {
        const [running, queued] = await Promise.all([list('running', 500), list('queued', 1)]);
        if (running.status !== 200 || queued.status !== 200)
          throw new Error(`listing runs: ${running.status} ${queued.status}`);
        maxRunningPolled = Math.max(maxRunningPolled, running.body.length);
        return running.body.length === 0 && queued.body.length === 0;
      },
      LOAD_TIMEOUT_MS + n * 5_000,
      200,
    );
    const drained = performance.now() - sent;
    if (samplingFailed) throw samplingFailed;
    const runs: Run[] = [];
    for (const number of numbers) {
      const run = (await waitForRun(valve, session, APP, number)) as unknown as Run;
      runs.push(await succeeded(valve, session, run));
    }
    const last = memoryKb(pid);
    const waits = runs.map((r) => at(r.startedAt) - at(r.createdAt));
    return {
      runs: n,
      dispatchCalls,
      total: Math.max(...runs.map((r) => at(r.finishedAt))) - sentAt,
      drained,
      maxRunningPolled,
      maxRunning: maxOverlap(runs.map((r) => [at(r.startedAt), at(r.finishedAt)])),
      maxJobs: maxOverlap(
        runs.flatMap((r) =>
          r.jobs.map((j): [number, number] => [at(j.startedAt), at(j.finishedAt)]),
        ),
      ),
      queueWaitMedian: median(waits),
      queueWaitMax: Math.max(...waits),
      idleRss,
      peakRss: Math.max(peakRss, last.rss),
      samples,
      hwm: last.hwm,
      hwmSinceStart,
    };
  } finally {
    clearInterval(sampler);
  }
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) =>
    `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`;
  console.log(line(rows[0]!));
  console.log(`  ${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const row of rows.slice(1)) console.log(line(row));
}

async function setUp(valve: Valve, work: string): Promise<Session> {
  const alice = await signup(valve, 'alice', 'dev');
  const created = await api(valve, alice.token, 'POST', '/api/apps', {
    team: 'dev',
    name: 'bench',
    template: 'node-http',
  });
  if (created.status !== 201) throw new Error(`create app: ${JSON.stringify(created.body)}`);
  const dir = join(work, 'bench');
  git(work, ['clone', '-q', cloneUrl(valve, alice, APP), dir]);
  // Only the bench's workflows, all manual: the push itself starts no run.
  rmSync(join(dir, '.valve/workflows'), { recursive: true, force: true });
  mkdirSync(join(dir, '.valve/workflows'), { recursive: true });
  for (const [file, text] of Object.entries(workflows))
    writeFileSync(join(dir, '.valve/workflows', file), text);
  git(dir, ['add', '-A']);
  git(dir, ['commit', '-qm', 'bench workflows']);
  git(dir, ['push', '-q', 'origin', 'HEAD:main']);
  return alice;
}

async function main() {
  const valve = await startValve({
    env: {
      VALVE_MAX_PARALLEL_RUNS: String(MAX_PARALLEL),
      VALVE_MAX_PARALLEL_JOBS: String(MAX_PARALLEL),
    },
  });
  const work = mkdtempSync(join(tmpdir(), 'valve-bench-'));
  try {
    const alice = await setUp(valve, work);
    console.log(
      `Valve at ${valve.url}, local executor, max ${MAX_PARALLEL} parallel runs and ${MAX_PARALLEL} parallel jobs`,
    );

    // 1. Overhead of 100 trivial steps.
    const measured = new Map<string, Measured[]>(shapes.map((s) => [s.workflow, []]));
    for (const shape of shapes) {
      const warm = await measureRun(valve, alice, shape.workflow);
      console.log(`warm-up, ${shape.label}: ${time(warm.client)} (not counted)`);
    }
    for (let i = 1; i <= repeat; i++) {
      for (const shape of shapes) {
        const m = await measureRun(valve, alice, shape.workflow);
        measured.get(shape.workflow)!.push(m);
        console.log(
          `#${i} ${shape.label}: client ${time(m.client)}, API ${time(m.api)} (queued ${time(m.queued)}), steps' own time ${time(m.steps)}`,
        );
      }
    }
    oneScript();
    separateSpawns();
    const script = median(Array.from({ length: BASELINE_SAMPLES }, oneScript));
    const spawns = median(Array.from({ length: BASELINE_SAMPLES }, separateSpawns));
    console.log(
      `one bash script of ${COMMANDS} lines: ${time(script)}; ${COMMANDS} bash processes: ${time(spawns)} (medians of ${BASELINE_SAMPLES})`,
    );

    // 2. The queue under load: N/5 first, then N, each with its own memory peak.
    const small = Math.max(1, Math.round(loadRuns / 5));
    const loads: Load[] = [];
    for (const n of [small, loadRuns]) {
      const load = await underLoad(valve, alice, n);
      loads.push(load);
      console.log(
        `${n} runs dispatched at once: drained in ${time(load.drained)}, max ${load.maxRunning} running, peak RSS ${mb(load.peakRss)}`,
      );
    }

    // 3. Summary.
    console.log(
      `\nOverhead: ${JOBS} jobs x ${STEPS_PER_JOB} steps of \`true\` (medians of ${repeat} runs)`,
    );
    const overheadRows = [
      [
        'workflow',
        'view',
        'Valve',
        'one script',
        `${COMMANDS} spawns`,
        'Valve/script',
        'Valve/spawns',
        'overhead/run',
        'overhead/step',
      ],
    ];
    for (const shape of shapes) {
      const list = measured.get(shape.workflow)!;
      for (const [view, valveMs] of [
        ['client', median(list.map((m) => m.client))],
        ['API', median(list.map((m) => m.api))],
      ] as const) {
        overheadRows.push([
          shape.label,
          view,
          time(valveMs),
          time(script),
          time(spawns),
          ratio(valveMs, script),
          ratio(valveMs, spawns),
          time(valveMs - script),
          time((valveMs - spawns) / COMMANDS),
        ]);
      }
    }
    printTable(overheadRows);
    console.log(
      `  client: dispatch sent -> run seen finished; API: createdAt -> finishedAt.\n` +
        `  overhead/run = Valve - one script; overhead/step = (Valve - ${COMMANDS} spawns) / ${COMMANDS}, the platform's cost per step beyond spawning its shell.`,
    );
    const breakdownRows = [
      ['workflow', 'dispatch call', 'queued', 'steps own time', 'mean per step'],
    ];
    for (const shape of shapes) {
      const list = measured.get(shape.workflow)!;
      const steps = median(list.map((m) => m.steps));
      breakdownRows.push([
        shape.label,
        time(median(list.map((m) => m.dispatchCall))),
        time(median(list.map((m) => m.queued))),
        time(steps),
        time(steps / COMMANDS),
      ]);
    }
    printTable(breakdownRows);

    console.log(
      `\nQueue under load: 2 jobs x 3 steps (one \`sleep 0.2\` per job), dispatched at once`,
    );
    const column = (f: (l: Load) => string) => loads.map(f);
    printTable([
      ['', ...column((l) => `${l.runs} run${l.runs === 1 ? '' : 's'}`)],
      ['dispatch calls (all)', ...column((l) => time(l.dispatchCalls))],
      ['total (last finishedAt)', ...column((l) => time(l.total))],
      ['drained (client poll)', ...column((l) => time(l.drained))],
      ['runs/minute', ...column((l) => ((l.runs / l.total) * 60_000).toFixed(1))],
      ['sleep-bound floor', ...column((l) => time((l.runs * 2 * 200) / MAX_PARALLEL))],
      ['max running (polled)', ...column((l) => String(l.maxRunningPolled))],
      ['max running (timestamps)', ...column((l) => String(l.maxRunning))],
      ['max jobs at once (timestamps)', ...column((l) => String(l.maxJobs))],
      ['queue wait median', ...column((l) => time(l.queueWaitMedian))],
      ['queue wait max', ...column((l) => time(l.queueWaitMax))],
      ['server RSS before', ...column((l) => mb(l.idleRss))],
      ['server RSS peak (sampled)', ...column((l) => `${mb(l.peakRss)} (${l.samples})`)],
      [
        loads.some((l) => l.hwmSinceStart) ? 'server VmHWM (since start)' : 'server VmHWM (phase)',
        ...column((l) => mb(l.hwm)),
      ],
    ]);
    console.log(
      `  sleep-bound floor: runs x 2 jobs x 0.2 s / ${MAX_PARALLEL} job slots, the least the sleeps alone allow.`,
    );
  } finally {
    await valve.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
