/**
 * The deploy subsystem's own cost.
 *
 * 1. Reconciliation with no change: N apps (default 1,000), each with a deploy repo holding the
 *    rendered manifests of the `node-http` template for one environment. Two are made by the
 *    real DeployService, the rest are copies of the first written as git objects (checked
 *    against the second), with real SQLite rows; a first pass applies them all. Then the
 *    reconciler's own poll (DeployService.pollNow(): every app, a few at a time, each pass
 *    reusing what it read at a deploy-repo head that has not moved), while nothing changes: wall time, CPU, git processes spawned, memory. The target is an
 *    in-memory one standing in for `local` (status() answers "runs what was applied"): N real
 *    local workloads would measure the target, not the reconciler. Beside it the naive poller
 *    on the same machine: a shell loop of `git rev-parse` over the same N repos.
 *    Then one app with three environments (dev, stage, prod), all deployed and synced, gets one
 *    deploy commit to dev: the git processes the next poll spawns, and what it applied (dev only).
 * 2. Push-to-live for the sample app through a real Valve server, on the local target and on a
 *    registered podman target (an image built on a base imported from a rootfs holding this
 *    host's node binary and its shared libraries): from `git push` returning to the new version
 *    answering at the environment's URL, beside the pipeline's own commands (its `run` steps);
 *    the rest is Valve's overhead, broken down by step, by the deploy history's sync and by the
 *    target's progress messages. For podman, also `podman run` of the same image by hand.
 *
 * The first pass reads every deploy repo (a `git cat-file --batch` and a `git log` per app) and
 * applies it (minutes on a 2-core machine for 1,000 apps); a no-change poll then spawns none. Passes stop at a time budget
 * after at least one; `--apps 200` runs in a few minutes.
 *
 *   npm run bench:deploy -- [--apps 1000] [--pushes 5] [--skip-podman] [--skip-push]
 *
 * `--skip-push` runs part 1 only (no Valve server, no podman).
 */
import { execFile, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { createServer } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { DeployService, deployMigrations, parseAppSpec } from '../src/deploy/index.js';
import { EventBus } from '../src/events.js';
import { GitService } from '../src/git/index.js';
import { openStore } from '../src/store/index.js';
import {
  api,
  cloneUrl,
  git,
  repoRoot,
  signup,
  startValve,
  waitFor,
  type Session,
  type Valve,
} from '../test/e2e/harness.js';
import { historyOf, readTemplate, writeDeployRepo } from './lib/deploy-repos.js';
import { InMemoryTarget, everyImage } from './lib/in-memory-target.js';
import { cpuMs, loadAverage, machineInfo, memoryKb, resetPeak } from './lib/machine.js';
import { writeNodeRootfs } from './lib/node-rootfs.js';
import { measurePushes, type PushResults } from './lib/push-measure.js';
import { mb, median, percent, printTable, time } from './lib/report.js';

const { values: args } = parseArgs({
  options: {
    apps: { type: 'string', default: '1000' },
    pushes: { type: 'string', default: '5' },
    'skip-podman': { type: 'boolean', default: false },
    'skip-push': { type: 'boolean', default: false },
  },
});
const positive = (text: string, flag: string) => {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} must be a positive integer`);
  return value;
};
const appCount = positive(args.apps, '--apps');
const pushes = positive(args.pushes, '--pushes');
const skipPodman = args['skip-podman'];
const skipPush = args['skip-push'];

const run = promisify(execFile);
const PASSES = 5;
const NAIVE_SAMPLES = 3;
/**
 * A pass over 1,000 apps takes minutes on a small machine: passes stop (after at least one)
 * once the next would end past this, and the naive loop is repeated only within its own budget.
 */
const RECONCILE_BUDGET_MS = 6 * 60_000;
const NAIVE_BUDGET_MS = 30_000;
const TEAM = 'bench';
const ENVIRONMENT = 'dev';
const REGISTRY_HOST = '127.0.0.1:7080';

// ---- counting git processes: every spawn of this process goes through here ----

/**
 * Wraps child_process.spawn (and updates the ESM bindings the git plumbing imported) so each
 * `git` child is counted, with how many run at once. Costs a counter; nothing else changes.
 */
const gitProcesses = { spawned: 0, running: 0, maxRunning: 0 };
{
  const childProcess = createRequire(import.meta.url)('node:child_process') as {
    spawn: (...spawnArgs: unknown[]) => ChildProcess;
  };
  const original = childProcess.spawn;
  childProcess.spawn = function (this: unknown, ...spawnArgs: unknown[]) {
    const child = original.apply(this, spawnArgs);
    if (spawnArgs[0] === 'git') {
      gitProcesses.spawned++;
      gitProcesses.maxRunning = Math.max(gitProcesses.maxRunning, ++gitProcesses.running);
      child.once('close', () => gitProcesses.running--);
    }
    return child;
  };
  syncBuiltinESMExports();
}

// ---- part 1: reconciliation with no change ----

const sha = (algorithm: 'sha1' | 'sha256', text: string) =>
  createHash(algorithm).update(text).digest('hex');
const appName = (i: number) => `app-${String(i).padStart(4, '0')}`;
const imageOf = (app: string) => `${REGISTRY_HOST}/${TEAM}/${app}@sha256:${sha('sha256', app)}`;

/** What turns the template app's names and pins into another app's, full forms first. */
function renamer(from: string, to: string): (text: string) => string {
  const pairs: [string, string][] = [
    [sha('sha256', from), sha('sha256', to)],
    [sha('sha1', from), sha('sha1', to)],
    [sha('sha256', from).slice(0, 12), sha('sha256', to).slice(0, 12)],
    [sha('sha1', from).slice(0, 7), sha('sha1', to).slice(0, 7)],
    [from, to],
  ];
  return (text) => pairs.reduce((out, [a, b]) => out.replaceAll(a, b), text);
}

interface Pass {
  wall: number;
  cpuSelf: number;
  cpuChildren: number;
  gitSpawned: number;
  gitMaxRunning: number;
  maxFds: number;
  /** Longest time the event loop was blocked (a timer due every 20 ms ran this late), ms. */
  loopDelayMax: number;
  loopDelayP99: number;
  events: number;
  applies: number;
}

interface ReconcileResults {
  apps: number;
  setupReal: number;
  setupCopies: number;
  settle: Pass;
  passes: Pass[];
  stoppedEarly: boolean;
  rssIdle: number;
  rssBeforePasses: number;
  heapBeforePasses: number;
  peakRss: number;
  peakRssIsPhase: boolean;
  peakHeap: number;
  manifests: number;
  naive: { wall: number; cpuChildren: number }[];
}

const fdCount = () => readdirSync('/proc/self/fd').length;

async function reconciliation(apps: number): Promise<ReconcileResults> {
  const started = performance.now();
  const rssIdle = memoryKb().rss;
  const work = mkdtempSync(join(tmpdir(), 'valve-bench-reconcile-'));
  const store = await openStore(join(work, 'valve.db'), [deployMigrations]);
  const events = new EventBus();
  const gitService = new GitService(join(work, 'git'), events);
  const target = new InMemoryTarget();
  const deploy = new DeployService({
    db: store.db,
    git: gitService,
    events,
    target,
    images: everyImage,
    registryHost: () => REGISTRY_HOST,
    dataDir: work,
  });
  const repoOf = (app: string) => gitService.pathOf(`${TEAM}/${app}.deploy.git`);
  try {
    // Setup (not measured). Two apps the way a pipeline's deploy step makes them...
    const template = readFileSync(
      join(repoRoot, 'src/apps/templates/node-http/valve.yaml'),
      'utf8',
    );
    const real = [appName(1), appName(2)].slice(0, apps);
    for (const app of real) {
      await deploy.createEnvironments(TEAM, app, [ENVIRONMENT], 'bench');
      await deploy.deployImage({
        team: TEAM,
        app,
        environment: ENVIRONMENT,
        spec: parseAppSpec(template.replaceAll('{{app}}', app)),
        image: imageOf(app),
        sourceCommit: sha('sha1', app),
        actor: 'bench',
      });
    }
    const setupReal = performance.now() - started;
    // ...and the rest as copies of the first, renamed, checked against the second.
    const copiesStarted = performance.now();
    const first = readTemplate(repoOf(appName(1)));
    if (apps >= 2) {
      const check = join(work, 'check.git');
      writeDeployRepo(first, check, renamer(appName(1), appName(2)));
      const [copy, made] = [historyOf(check), historyOf(repoOf(appName(2)))];
      if (copy.join() !== made.join())
        throw new Error(
          `a copied deploy repo differs from one Valve made:\n  copy: ${copy.join('; ')}\n  Valve: ${made.join('; ')}`,
        );
      rmSync(check, { recursive: true, force: true });
    }
    const row = (await store.db
      .selectFrom('deploy_environments')
      .selectAll()
      .where('app_key', '=', `${TEAM}/${appName(1)}`)
      .executeTakeFirstOrThrow()) as Record<string, unknown>;
    const names = Array.from({ length: apps }, (_, i) => appName(i + 1));
    for (const app of names.slice(real.length)) {
      writeDeployRepo(first, repoOf(app), renamer(appName(1), app));
      await store.db
        .insertInto('deploy_environments')
        .values({ ...row, app_key: `${TEAM}/${app}` })
        .execute();
    }
    const setupCopies = performance.now() - copiesStarted;
    const manifests = first.commits.at(-1)!.files.filter((f) => /\.ya?ml$/.test(f.path)).length;

    // The first pass applies every app, four at a time (a thousand at once would only queue
    // thousands of git processes); the measured passes are the reconciler's own poll.
    let changes = 0;
    const unsubscribe = events.on('deploy.updated', () => changes++);
    let peakHeap = 0;
    let maxFds = 0;
    const sampler = setInterval(() => {
      peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
      maxFds = Math.max(maxFds, fdCount());
    }, 20);
    const applyAll = async () => {
      let next = 0;
      const worker = async () => {
        while (next < names.length) await deploy.reconcileApp(TEAM, names[next++]!);
      };
      await Promise.all(Array.from({ length: 4 }, worker));
    };
    const pass = async (body: () => Promise<void>): Promise<Pass> => {
      const before = { ...gitProcesses, cpu: cpuMs(), events: changes, applies: target.applies };
      gitProcesses.maxRunning = gitProcesses.running;
      maxFds = fdCount();
      const loop = monitorEventLoopDelay({ resolution: 20 });
      loop.enable();
      const passStarted = performance.now();
      await body();
      const wall = performance.now() - passStarted;
      loop.disable();
      const cpu = cpuMs();
      return {
        wall,
        cpuSelf: cpu.self - before.cpu.self,
        cpuChildren: cpu.children - before.cpu.children,
        gitSpawned: gitProcesses.spawned - before.spawned,
        gitMaxRunning: gitProcesses.maxRunning,
        maxFds,
        loopDelayMax: loop.max / 1e6,
        loopDelayP99: loop.percentile(99) / 1e6,
        events: changes - before.events,
        applies: target.applies - before.applies,
      };
    };
    const passes: Pass[] = [];
    let stoppedEarly = false;
    let rssBeforePasses = 0;
    let heapBeforePasses = 0;
    let peakRssIsPhase = false;
    let settle: Pass;
    try {
      settle = await pass(applyAll);
      console.log(`  first pass (applies all ${apps}): ${time(settle.wall)}`);
      if (target.applies !== apps)
        throw new Error(`the first pass applied ${target.applies} workloads, expected ${apps}`);
      await expectAllSynced(store.db, apps, 'after the first pass');
      rssBeforePasses = memoryKb().rss;
      heapBeforePasses = process.memoryUsage().heapUsed;
      peakHeap = 0;
      peakRssIsPhase = resetPeak();
      const passesStarted = performance.now();
      for (let i = 0; i < PASSES; i++) {
        const elapsed = performance.now() - passesStarted;
        const last = passes.at(-1)?.wall ?? settle.wall;
        if (i > 0 && elapsed + last > RECONCILE_BUDGET_MS) {
          stoppedEarly = true;
          break;
        }
        const measured = await pass(() => deploy.pollNow());
        passes.push(measured);
        console.log(
          `  pass ${i + 1}: ${time(measured.wall)}, ${measured.gitSpawned} git processes`,
        );
      }
    } finally {
      clearInterval(sampler);
      unsubscribe();
    }
    const peakRss = memoryKb().hwm;
    await expectAllSynced(store.db, apps, 'after the measured passes');
    const changed = passes.filter((p) => p.events > 0 || p.applies > 0);
    if (changed.length)
      throw new Error(
        `a pass with no change changed something: ${JSON.stringify(changed.map((p) => ({ events: p.events, applies: p.applies })))}`,
      );
    if (settle.gitSpawned === 0)
      throw new Error('no git process was counted: the spawn counter is not in the git plumbing');

    // The naive poller: one shell loop, one `git rev-parse` per repo.
    const dirs = names.map(repoOf);
    const loop =
      'for d in "$@"; do git --git-dir="$d" rev-parse --verify -q "refs/heads/main^{commit}"; done >/dev/null';
    const naive: ReconcileResults['naive'] = [];
    const naiveStarted = performance.now();
    while (
      naive.length < NAIVE_SAMPLES &&
      (naive.length === 0 || performance.now() - naiveStarted < NAIVE_BUDGET_MS)
    ) {
      const cpu = cpuMs();
      const loopStarted = performance.now();
      const result = spawnSync('bash', ['-c', loop, 'bash', ...dirs], { stdio: 'ignore' });
      const wall = performance.now() - loopStarted;
      if (result.status !== 0) throw new Error(`the rev-parse loop exited ${result.status}`);
      naive.push({ wall, cpuChildren: cpuMs().children - cpu.children });
    }
    return {
      apps,
      setupReal,
      setupCopies,
      settle,
      passes,
      stoppedEarly,
      rssIdle,
      rssBeforePasses,
      heapBeforePasses,
      peakRss,
      peakRssIsPhase,
      peakHeap,
      manifests,
      naive,
    };
  } finally {
    await store.close();
    rmSync(work, { recursive: true, force: true });
  }
}

async function expectAllSynced(
  db: Awaited<ReturnType<typeof openStore>>['db'],
  apps: number,
  when: string,
) {
  const rows = (await db
    .selectFrom('deploy_environments')
    .select(['app_key', 'sync_status', 'message'])
    .execute()) as { app_key: string; sync_status: string; message: string | null }[];
  const synced = rows.filter((row) => row.sync_status === 'Synced').length;
  if (rows.length !== apps || synced !== apps) {
    const other = rows.find((row) => row.sync_status !== 'Synced');
    throw new Error(
      `${when}: ${synced} of ${rows.length} environments Synced (expected ${apps})${other ? `; ${other.app_key}: ${other.sync_status} ${other.message ?? ''}` : ''}`,
    );
  }
}

// ---- part 1b: a poll after one deploy commit ----

const COMMIT_ENVIRONMENTS = ['dev', 'stage', 'prod'];

interface CommitPollResults {
  /** Git processes of a poll with no change (the baseline: none). */
  idleSpawned: number;
  /** Git processes of the poll after the deploy commit to dev, and of the pass it started. */
  spawned: number;
  wall: number;
  /** Workloads applied by that poll's passes, by key. */
  applied: string[];
}

/**
 * One app with three environments, each deployed through the deploy service and applied; then
 * one deploy commit to dev (not counted) and one poll (DeployService.pollNow(), then the passes
 * it started, awaited): the git processes spawned for reading the moved head.
 */
async function pollAfterDeployCommit(): Promise<CommitPollResults> {
  const work = mkdtempSync(join(tmpdir(), 'valve-bench-commit-'));
  const store = await openStore(join(work, 'valve.db'), [deployMigrations]);
  const events = new EventBus();
  const gitService = new GitService(join(work, 'git'), events);
  const target = new InMemoryTarget();
  const applied: string[] = [];
  const apply = target.apply.bind(target);
  target.apply = (spec) => {
    applied.push(spec.key);
    return apply(spec);
  };
  const deploy = new DeployService({
    db: store.db,
    git: gitService,
    events,
    target,
    images: everyImage,
    registryHost: () => REGISTRY_HOST,
    dataDir: work,
  });
  try {
    const app = appName(1);
    const template = readFileSync(
      join(repoRoot, 'src/apps/templates/node-http/valve.yaml'),
      'utf8',
    );
    const spec = parseAppSpec(
      template.replaceAll('{{app}}', app) + '  stage:\n    replicas: 1\n  prod:\n    replicas: 2\n',
    );
    const deployTo = (environment: string, image: string) =>
      deploy.deployImage({
        team: TEAM,
        app,
        environment,
        spec,
        image,
        sourceCommit: sha('sha1', image),
        actor: 'bench',
      });
    await deploy.createEnvironments(TEAM, app, COMMIT_ENVIRONMENTS, 'bench');
    for (const environment of COMMIT_ENVIRONMENTS) await deployTo(environment, imageOf(app));
    await deploy.reconcileApp(TEAM, app);
    if (applied.length !== COMMIT_ENVIRONMENTS.length)
      throw new Error(`the first pass applied ${applied.length} workloads, expected 3`);
    const idle = gitProcesses.spawned;
    await deploy.pollNow();
    await deploy.reconcileApp(TEAM, app);
    const idleSpawned = gitProcesses.spawned - idle;

    await deployTo('dev', imageOf(`${app}-v2`));
    applied.length = 0;
    const before = gitProcesses.spawned;
    const started = performance.now();
    await deploy.pollNow();
    // The poll resolves once every environment was looked at; the apply it started finishes
    // in the pass, which a head that did not move since costs no git process to wait for.
    await deploy.reconcileApp(TEAM, app);
    const wall = performance.now() - started;
    return { idleSpawned, spawned: gitProcesses.spawned - before, wall, applied: [...applied] };
  } finally {
    await store.close();
    rmSync(work, { recursive: true, force: true });
  }
}

function printCommitPoll(r: CommitPollResults): void {
  console.log(
    `\nPoll after one deploy commit to dev of an app with ${COMMIT_ENVIRONMENTS.length} environments (${COMMIT_ENVIRONMENTS.join(', ')})`,
  );
  console.log(
    `  git processes spawned: ${r.spawned} (a poll with no change: ${r.idleSpawned}); ` +
      `wall ${time(r.wall)}; applied: ${r.applied.join(', ') || 'nothing'}`,
  );
}

/** A ratio with two significant digits: 25x, 1.3x, 0.046x. */
const ratio = (value: number) => `${Number(value.toPrecision(2))}x`;

function printReconciliation(r: ReconcileResults): void {
  const m = (f: (p: Pass) => number) => median(r.passes.map(f));
  const wall = m((p) => p.wall);
  const spawned = m((p) => p.gitSpawned);
  const naiveWall = median(r.naive.map((n) => n.wall));
  const naiveCpu = median(r.naive.map((n) => n.cpuChildren));
  const perGit = naiveWall / r.apps;
  const count = `${r.passes.length} pass${r.passes.length === 1 ? '' : 'es'}`;
  console.log(
    `\nReconciliation of ${r.apps} apps x 1 environment with no change (median of ${count}` +
      `${r.stoppedEarly ? `; ${PASSES} asked, stopped at the ${RECONCILE_BUDGET_MS / 60_000} min budget` : ''})`,
  );
  console.log(
    `  How: DeployService.pollNow(), the reconciler's poll: every app, 4 at a time; a deploy repo whose head did not move is not read again.\n` +
      `  Target: an in-memory stand-in for local (status() answers "runs what was applied", no processes).\n` +
      `  Deploy repos: real git, ${r.manifests} manifests each (node-http rendered); store: real SQLite.`,
  );
  console.log(
    `  Setup, not measured: 2 apps through the deploy service in ${time(r.setupReal)}, ` +
      `${Math.max(0, r.apps - 2)} copies in ${time(r.setupCopies)}; ` +
      `first pass (applies all ${r.apps}): ${time(r.settle.wall)}, ${r.settle.gitSpawned} git processes`,
  );
  printTable([
    ['', 'Valve pass', 'per app', `naive rev-parse loop`, 'per repo', 'Valve / naive'],
    [
      'wall time',
      time(wall),
      time(wall / r.apps),
      time(naiveWall),
      time(naiveWall / r.apps),
      ratio(wall / naiveWall),
    ],
    [
      'CPU, this process',
      time(m((p) => p.cpuSelf)),
      time(m((p) => p.cpuSelf) / r.apps),
      '-',
      '-',
      '',
    ],
    [
      'CPU, child processes',
      time(m((p) => p.cpuChildren)),
      time(m((p) => p.cpuChildren) / r.apps),
      time(naiveCpu),
      time(naiveCpu / r.apps),
      ratio(m((p) => p.cpuChildren) / naiveCpu),
    ],
    ['git processes', String(spawned), (spawned / r.apps).toFixed(1), String(r.apps), '1.0', ''],
  ]);
  console.log(
    `  naive: one bash loop running \`git rev-parse refs/heads/main\` per repo (median of ${r.naive.length}); CPU of children is what reaped processes used.`,
  );
  console.log(
    `  event loop blocked during a pass: up to ${time(m((p) => p.loopDelayMax))} at once (p99 ${time(m((p) => p.loopDelayP99))}); ` +
      `the server's HTTP API shares this loop`,
  );
  console.log(
    `  max git processes at once (spawned, exit not yet handled): ${m((p) => p.gitMaxRunning)}; max open file descriptors: ${m((p) => p.maxFds)}`,
  );
  console.log(
    `  ${spawned} git processes at the naive loop's cost each (${time(perGit)}): ${time(spawned * perGit)} one after another, ${((spawned * perGit) / wall).toFixed(1)}x the pass`,
  );
  console.log(
    `  memory: RSS ${mb(r.rssIdle)} before setup, ${mb(r.rssBeforePasses)} before the passes, ` +
      `peak ${mb(r.peakRss)} during them (VmHWM${r.peakRssIsPhase ? ', reset before the passes' : ' since start'});\n` +
      `  heap used ${mb(r.heapBeforePasses / 1024)} after the first pass, at most ${r.peakHeap ? mb(r.peakHeap / 1024) : 'n/a'} during the passes (sampled every 20 ms when the event loop lets the timer run)`,
  );
  printTable([
    [
      'pass',
      'wall',
      'CPU self',
      'CPU children',
      'git',
      'max git at once',
      'max fds',
      'loop blocked',
      'changes',
    ],
    ...[['first', r.settle] as const, ...r.passes.map((p, i) => [String(i + 1), p] as const)].map(
      ([label, p]) => [
        label,
        time(p.wall),
        time(p.cpuSelf),
        time(p.cpuChildren),
        String(p.gitSpawned),
        String(p.gitMaxRunning),
        String(p.maxFds),
        time(p.loopDelayMax),
        String(p.events + p.applies),
      ],
    ),
  ]);
  console.log(
    '  changes: deploy.updated events + applies (the first pass applies every app; later passes must make none).',
  );
}

// ---- part 2: push-to-live ----

const PUSH_TEAM = 'deploybench';

async function createApp(valve: Valve, session: Session, name: string, work: string) {
  const created = await api(valve, session.token, 'POST', '/api/apps', {
    team: session.team,
    name,
    template: 'node-http',
  });
  if (created.status !== 201)
    throw new Error(`create app ${name}: ${JSON.stringify(created.body)}`);
  const dir = join(work, name);
  git(work, ['clone', '-q', cloneUrl(valve, session, `${session.team}/${name}`), dir]);
  return dir;
}

interface PodmanSetup {
  dir: string;
  baseSize: number;
  files: number;
  setup: number;
}

/** The podman app: target registered, base imported, valve.yaml and the workflow pointed at them. */
async function setUpPodman(valve: Valve, session: Session, work: string): Promise<PodmanSetup> {
  const started = performance.now();
  const name = 'hello-podman';
  const dir = await createApp(valve, session, name, work);
  const registered = await api(valve, session.token, 'POST', `/api/teams/${session.team}/targets`, {
    name: 'podman',
    kind: 'podman',
  });
  if (registered.status !== 201)
    throw new Error(`register the podman target: ${JSON.stringify(registered.body)}`);
  const tarball = join(work, 'node-rootfs.tar');
  const files = writeNodeRootfs(tarball);
  const body = readFileSync(tarball);
  const config = JSON.stringify({ workingDir: '/app' });
  const imported = await fetch(
    new URL(
      `/api/teams/${session.team}/images/import?name=${name}&tag=node-base&config=${encodeURIComponent(config)}`,
      valve.url,
    ),
    {
      method: 'POST',
      headers: { authorization: `Bearer ${session.token}`, 'content-type': 'application/x-tar' },
      body,
    },
  );
  if (imported.status !== 201)
    throw new Error(`import the node rootfs: ${imported.status} ${await imported.text()}`);
  const { size } = (await imported.json()) as { size: number };
  rmSync(tarball);

  const spec = join(dir, 'valve.yaml');
  const specText = readFileSync(spec, 'utf8');
  const onPodman = specText.replace(/( {2}dev:\n {4}replicas: 1\n)/, '$1    target: podman\n');
  if (onPodman === specText)
    throw new Error('valve.yaml of the template changed: no dev environment found');
  writeFileSync(spec, onPodman);
  const workflow = join(dir, '.valve/workflows/ci.yml');
  const workflowText = readFileSync(workflow, 'utf8');
  const onBase = workflowText.replace(
    /( {10}context: \.\n)/,
    `$1          base: ${session.team}/${name}:node-base\n`,
  );
  if (onBase === workflowText)
    throw new Error('ci.yml of the template changed: no build step found');
  writeFileSync(workflow, onBase);
  git(dir, ['commit', '-qam', 'run on podman, on a base with node']);
  return { dir, baseSize: size, files: files.length, setup: performance.now() - started };
}

/** Removes the containers and images the podman target made for this server. */
function cleanUpPodman(valve: Valve, session: Session): void {
  const owner = createHash('sha256')
    .update(resolve(join(valve.dataDir, 'targets', 'teams', session.team, 'podman')))
    .digest('hex')
    .slice(0, 16);
  const ids = spawnSync('podman', ['ps', '-aq', '--filter', `label=valve.dev/target=${owner}`], {
    encoding: 'utf8',
  })
    .stdout.split('\n')
    .filter(Boolean);
  if (ids.length) spawnSync('podman', ['rm', '-f', '-t', '0', ...ids], { stdio: 'ignore' });
  // Pulled (`<registry>/<team>/<app>`) or loaded (`localhost/valve-deploy/<team>/<app>`).
  const images = podmanImages()
    .filter((image) => image.repository.includes(`/${session.team}/`))
    .map((image) => image.id);
  if (images.length) spawnSync('podman', ['rmi', '-f', ...new Set(images)], { stdio: 'ignore' });
}

/** Every image in podman's storage: id, repository and manifest digest. */
function podmanImages(): { id: string; repository: string; digest: string }[] {
  return spawnSync(
    'podman',
    ['images', '--no-trunc', '--format', '{{.ID}} {{.Repository}} {{.Digest}}'],
    { encoding: 'utf8' },
  )
    .stdout.split('\n')
    .filter(Boolean)
    .map((line) => {
      const [id = '', repository = '', digest = ''] = line.split(' ');
      return { id: id.replace(/^sha256:/, ''), repository, digest };
    });
}

interface PushRow {
  label: string;
  results: PushResults | null;
  /** Why there are no results. */
  skipped?: string;
  note?: string;
  /** What the target reported during each apply, ms from the sync's start (from the server log). */
  timeline?: Map<string, number[]>;
  /** The same image started by hand with `podman run`, until it answers (podman only). */
  byHand?: number[];
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * The real alternative to the podman target's apply: `podman run` of the image it runs (already
 * in podman's storage), timed until GET /healthz answers; the container is removed after.
 */
async function podmanRunByHand(image: string, samples: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const port = await freePort();
    const name = `valve-bench-by-hand-${process.pid}-${i}`;
    const started = performance.now();
    try {
      // As the target runs it: the spec's command as the entrypoint, its args after the image.
      await run('podman', [
        'run',
        '--detach',
        '--name',
        name,
        '--publish',
        `127.0.0.1:${port}:8080`,
        '--env',
        'PORT=8080',
        '--pull=never',
        '--entrypoint',
        '["node"]',
        image,
        'server.js',
      ]);
      await waitFor(
        'the container started by hand',
        async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok,
        60_000,
        5,
      );
      times.push(performance.now() - started);
    } finally {
      spawnSync('podman', ['rm', '-f', '-t', '0', name], { stdio: 'ignore' });
    }
  }
  return times;
}

/**
 * The progress messages the reconciler logged for `key` during each measured push's sync, as
 * offsets from the sync's start; image references and addresses are left out of the labels.
 */
function applyTimeline(valve: Valve, key: string, results: PushResults): Map<string, number[]> {
  const lines = readFileSync(join(valve.dataDir, 'logs', 'valve.log'), 'utf8')
    .split('\n')
    .filter((line) => line.includes(`"key":"${key}"`))
    .map((line) => JSON.parse(line) as { time: number; msg?: string });
  const timeline = new Map<string, number[]>();
  for (const sample of results.samples) {
    if (!sample.sync) continue;
    const { startedAt, finishedAt } = sample.sync;
    for (const line of lines) {
      if (!line.msg || line.time < startedAt - 20 || line.time > finishedAt + 20) continue;
      const label = line.msg
        .replace(/\S+@sha256:[0-9a-f]+/g, '<image>')
        .replace(/https?:\/\/\S+|\b[\w.-]+\/[\w.-]+\/[\w-]+\b/g, '<address>');
      const list = timeline.get(label) ?? [];
      list.push(line.time - startedAt);
      timeline.set(label, list);
    }
  }
  return timeline;
}

function printPushes(rows: PushRow[]): void {
  console.log(`\nPush-to-live, node-http sample app, ${pushes} pushes after a warm-up (medians)`);
  for (const row of rows.filter((r) => !r.results))
    console.log(`  ${row.label}: not measured: ${row.skipped}`);
  const measured = rows.filter((row) => row.results);
  if (measured.length === 0) return;
  type Sample = PushResults['samples'][number];
  const cells = (f: (s: Sample) => number | null) =>
    measured.map((row) => {
      const values = row
        .results!.samples.map(f)
        .filter((v): v is number => v !== null && !Number.isNaN(v));
      return values.length ? median(values) : null;
    });
  const show = (values: (number | null)[]) => values.map((v) => (v === null ? '-' : time(v)));
  const totals = cells((s) => s.total) as number[];
  const commands = cells((s) => s.commands) as number[];
  const stepNames = [
    ...new Set(measured.flatMap((row) => [...row.results!.samples[0]!.steps.keys()])),
  ];
  const sync = (f: (s: NonNullable<Sample['sync']>, sample: Sample) => number) => (s: Sample) =>
    s.sync ? f(s.sync, s) : null;
  const step =
    (
      f: (
        st: NonNullable<NonNullable<Sample['sync']>['step']>,
        sy: NonNullable<Sample['sync']>,
        s: Sample,
      ) => number,
    ) =>
    (s: Sample) => (s.sync?.step ? f(s.sync.step, s.sync, s) : null);
  printTable([
    ['', ...measured.map((row) => row.label)],
    ['warm-up push (not counted)', ...measured.map((row) => time(row.results!.warmUp.total))],
    ['git push returned -> new version answers', ...totals.map(time)],
    ['push -> run started', ...show(cells((s) => s.queue))],
    ['run duration', ...show(cells((s) => s.run))],
    ["the pipeline's own commands (run steps)", ...commands.map(time)],
    ["Valve's overhead (total - commands)", ...totals.map((t, i) => time(t - commands[i]!))],
    ['overhead share of the total', ...totals.map((t, i) => percent(t - commands[i]!, t))],
    ...stepNames.map((name) => [
      `  step: ${name}`,
      ...show(cells((s) => s.steps.get(name) ?? null)),
    ]),
    [
      'deploy step started -> deploy commit made',
      ...show(
        cells(step((st, sy) => (sy.committedAt === null ? NaN : sy.committedAt - st.startedAt))),
      ),
    ],
    [
      'deploy commit made -> sync started',
      ...show(cells(sync((sy) => (sy.committedAt === null ? NaN : sy.startedAt - sy.committedAt)))),
    ],
    [
      'sync started -> new version answers',
      ...show(cells(sync((sy, s) => s.liveAt - sy.startedAt))),
    ],
    ['sync started -> sync finished', ...show(cells(sync((sy) => sy.finishedAt - sy.startedAt)))],
    [
      'sync finished -> deploy step finished',
      ...show(cells(step((st, sy) => st.finishedAt - sy.finishedAt))),
    ],
    ['new version answers -> run finished', ...show(cells((s) => s.runFinishedAt - s.liveAt))],
  ]);
  console.log(
    '  total: client clock, from `git push` returning to GET / answering with the new VERSION (polled every 5 ms);\n' +
      "  sync: the deploy history's sync of the push's deploy commit (reconciler -> target apply).",
  );
  for (const row of measured) {
    if (row.note) console.log(`  ${row.label}: ${row.note}`);
    if (!row.timeline?.size) continue;
    console.log(`  ${row.label} apply, from the sync's start (server log, medians):`);
    const events = [...row.timeline]
      .map(([label, offsets]) => ({ label, at: median(offsets), count: offsets.length }))
      .sort((a, b) => a.at - b.at);
    for (const event of events)
      console.log(
        `    ${time(event.at).padStart(9)}  ${event.label}${event.count < row.results!.samples.length ? ` (${event.count} of ${row.results!.samples.length})` : ''}`,
      );
    if (row.byHand?.length)
      console.log(
        `  by hand: \`podman run -d\` of the same image (already loaded) until GET /healthz answers: ${time(median(row.byHand))} (median of ${row.byHand.length})`,
      );
  }
}

async function pushToLive(): Promise<PushRow[]> {
  const valve = await startValve();
  const work = mkdtempSync(join(tmpdir(), 'valve-bench-push-'));
  let session: Session | undefined;
  let podmanUsed = false;
  const rows: PushRow[] = [];
  try {
    session = await signup(valve, 'alice', PUSH_TEAM);
    const local = await createApp(valve, session, 'hello', work);
    console.log(`\npush-to-live on local (${valve.url}):`);
    rows.push({
      label: 'local',
      results: await measurePushes({
        valve,
        session,
        app: `${PUSH_TEAM}/hello`,
        dir: local,
        pushes,
        onPush: (s, i) =>
          console.log(`  push ${i}: ${time(s.total)} (commands ${time(s.commands)})`),
      }),
    });

    const podman = spawnSync('podman', ['--version'], { encoding: 'utf8' });
    if (skipPodman) rows.push({ label: 'podman', results: null, skipped: '--skip-podman' });
    else if (podman.status !== 0)
      rows.push({ label: 'podman', results: null, skipped: 'podman is not installed' });
    else {
      podmanUsed = true;
      const setup = await setUpPodman(valve, session, work);
      console.log(
        `push-to-live on podman: base image of ${setup.files} files (node and its libraries), ${mb(setup.baseSize / 1024)} compressed, set up in ${time(setup.setup)}`,
      );
      rows.push({
        label: 'podman',
        results: await measurePushes({
          valve,
          session,
          app: `${PUSH_TEAM}/hello-podman`,
          dir: setup.dir,
          pushes,
          onPush: (s, i) =>
            console.log(`  push ${i}: ${time(s.total)} (commands ${time(s.commands)})`),
        }),
        note: `image = node-http on a ${mb(setup.baseSize / 1024)} base (this host's node + libraries, imported as a rootfs)`,
      });
      const envs = await api<{ digest: string | null }[]>(
        valve,
        session.token,
        'GET',
        `/api/apps/${PUSH_TEAM}/hello-podman/environments`,
      );
      const digest = envs.body[0]?.digest;
      if (!digest) throw new Error('the podman environment reports no digest');
      // The target pulled it from Valve's registry (podman records the manifest digest), or
      // loaded it under its own name.
      const pulled = podmanImages().find((image) => image.digest === digest);
      rows.at(-1)!.byHand = await podmanRunByHand(
        pulled?.id ??
          `localhost/valve-deploy/${PUSH_TEAM}/hello-podman:${digest.replace(':', '-')}`,
        3,
      );
    }
    for (const row of rows) {
      const app = row.label === 'local' ? 'hello' : 'hello-podman';
      if (row.results) row.timeline = applyTimeline(valve, `${PUSH_TEAM}/${app}/dev`, row.results);
    }
  } finally {
    await valve.destroy();
    if (podmanUsed && session) cleanUpPodman(valve, session);
    rmSync(work, { recursive: true, force: true });
  }
  return rows;
}

// ---- main ----

async function main() {
  console.log('Machine');
  for (const line of machineInfo()) console.log(`  ${line}`);
  console.log(`  load average before: ${loadAverage()}`);

  console.log(`\nreconciling ${appCount} apps:`);
  const reconciled = await reconciliation(appCount);
  const commitPoll = await pollAfterDeployCommit();
  const pushed = skipPush ? null : await pushToLive();

  printReconciliation(reconciled);
  printCommitPoll(commitPoll);
  if (pushed) printPushes(pushed);
  console.log(`\n  load average after: ${loadAverage()}`);
}

await main();
