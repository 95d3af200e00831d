/**
 * Promote and rollback through a real Valve server on the local target, phase by phase.
 *
 * The node-http sample app gets a `stage` environment and two versions pushed to `dev`; then
 * each round rolls `dev` back one deploy (so it alternates between the two versions) and
 * promotes `dev` to `stage`: each a real change. For every call:
 *
 * - the API call, from the client: `POST` sent -> answer received; inside it, on the server's
 *   clock (same host), the git processes Valve spawned: the reads before the commit (spec,
 *   approval rule, history, manifests) and the commit (rev-parse, fast-import, update-ref);
 * - after the answer: the commit -> the reconciler's sync started (compare: its own git reads,
 *   the target's status) -> the target's apply (the local target's progress messages in the
 *   server log: a new process started and ready, then the old one drained and stopped) ->
 *   the sync finished; and when the new version first answered at the environment's URL
 *   (polled every 5 ms).
 *
 * Then `valve promote` / `valve rollback` from the CLI (its own process, waiting by default
 * until the environment runs the commit), which is what a user at a terminal sees.
 *
 * The git processes are logged by this same file loaded into the server with `--import`
 * (VALVE_BENCH_GIT_LOG names the log): it wraps child_process.spawn as bench/deploy.ts does.
 *
 *   npm run bench:promote -- [--rounds 7] [--cli 3]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const GIT_LOG_ENV = 'VALVE_BENCH_GIT_LOG';
const clock = () => performance.timeOrigin + performance.now();

// ---- inside the server: log every git process ----

interface GitProcess {
  start: number;
  end: number;
  /** The git arguments after `--git-dir <dir>`. */
  args: string[];
}

/** Wraps child_process.spawn so each `git` child is appended to `file` when it exits. */
function logGitProcesses(file: string): void {
  const childProcess = createRequire(import.meta.url)('node:child_process') as {
    spawn: (...spawnArgs: unknown[]) => ChildProcess;
  };
  const original = childProcess.spawn;
  childProcess.spawn = function (this: unknown, ...spawnArgs: unknown[]) {
    const start = clock();
    const child = original.apply(this, spawnArgs);
    if (spawnArgs[0] === 'git') {
      const all = spawnArgs[1] as string[];
      const args = all[0] === '--git-dir' ? all.slice(2) : all;
      child.once('close', () => {
        const entry: GitProcess = { start, end: clock(), args };
        appendFileSync(file, JSON.stringify(entry) + '\n');
      });
    }
    return child;
  };
  syncBuiltinESMExports();
  // The server's children (pipeline steps, app instances) are not to load this.
  delete process.env.NODE_OPTIONS;
  delete process.env[GIT_LOG_ENV];
}

// ---- the bench ----

/** What a git process does, for the tables: `cat-file --batch`, `cat-file valve.yaml`, `log`. */
function label(p: GitProcess): string {
  if (p.args[0] !== 'cat-file') return p.args[0]!;
  if (p.args[1] === '--batch') return 'cat-file --batch';
  return `cat-file ${p.args[2]?.split(':')[1] ?? ''}`;
}

/** `log x1, cat-file --batch x2`: median counts per call. */
function tally(perCall: GitProcess[][], median: (values: number[]) => number): string {
  const names = [...new Set(perCall.flat().map(label))];
  return names
    .map(
      (name) =>
        [name, median(perCall.map((ps) => ps.filter((p) => label(p) === name).length))] as const,
    )
    .filter(([, count]) => count > 0)
    .map(([name, count]) => `${name} x${count}`)
    .join(', ');
}

interface Call {
  kind: 'promote' | 'rollback';
  environment: string;
  /** Client clock, epoch ms. */
  sent: number;
  answered: number;
  /** Git processes that started between `sent` and `answered`, in order. */
  git: GitProcess[];
  /** The processes of the commit (GitService.commit: rev-parse, fast-import, update-ref). */
  commit: GitProcess[];
  syncStartedAt: number;
  syncFinishedAt: number;
  /** Git processes from the commit to the sync's start: the reconciler's compare. */
  compareGit: GitProcess[];
  /** Target progress messages during the sync (ms from the sync's start). */
  progress: { label: string; at: number }[];
  liveAt: number;
}

/** The commit's processes: update-ref and those before it back to the first rev-parse of the run. */
function commitOf(processes: GitProcess[]): GitProcess[] {
  // commitFiles starts with fast-import (before, with read-tree: kept to compare old runs).
  const start = processes.findIndex((p) => ['fast-import', 'read-tree'].includes(p.args[0]!));
  const updateRef = processes.findIndex((p) => p.args[0] === 'update-ref');
  if (start < 0 || updateRef < 0) return [];
  let first = start;
  while (first > 0 && processes[first - 1]!.args[0] === 'rev-parse') first--;
  return processes.slice(first, updateRef + 1);
}

async function bench(rounds: number, cliRuns: number): Promise<void> {
  const harness = await import('../test/e2e/harness.js');
  const { machineInfo, loadAverage } = await import('./lib/machine.js');
  const { median, printTable, time } = await import('./lib/report.js');
  const { api, cloneUrl, git, repoRoot, signup, startValve, waitFor, waitForRun } = harness;

  console.log('Machine');
  for (const line of machineInfo()) console.log(`  ${line}`);
  console.log(`  load average before: ${loadAverage()}`);

  const work = mkdtempSync(join(tmpdir(), 'valve-bench-promote-'));
  const gitLog = join(work, 'git-processes.jsonl');
  writeFileSync(gitLog, '');
  const valve = await startValve({
    env: {
      NODE_OPTIONS:
        `${process.env.NODE_OPTIONS ?? ''} --import tsx --import ${fileURLToPath(import.meta.url)}`.trim(),
      [GIT_LOG_ENV]: gitLog,
    },
  });
  const app = 'bench/hello';
  try {
    const session = await signup(valve, 'alice', 'bench');
    const created = await api(valve, session.token, 'POST', '/api/apps', {
      team: 'bench',
      name: 'hello',
      template: 'node-http',
    });
    if (created.status !== 201) throw new Error(`create app: ${JSON.stringify(created.body)}`);
    const dir = join(work, 'hello');
    git(work, ['clone', '-q', cloneUrl(valve, session, app), dir]);
    const spec = join(dir, 'valve.yaml');
    writeFileSync(
      spec,
      readFileSync(spec, 'utf8') +
        ['  stage:', '    variables:', '      GREETING: Howdy', ''].join('\n'),
    );

    const environment = async (name: string) =>
      (
        await api<{ url: string | null }>(
          valve,
          session.token,
          'GET',
          `/api/apps/${app}/environments/${name}`,
        )
      ).body;
    const text = async (url: string) => {
      try {
        return await (await fetch(url)).text();
      } catch {
        return '';
      }
    };

    // Two versions on dev: rollbacks alternate between them.
    for (const [i, version] of ['v1', 'v2'].entries()) {
      const file = join(dir, 'greeting.js');
      writeFileSync(
        file,
        readFileSync(file, 'utf8').replace(/VERSION = '[^']*'/, `VERSION = '${version}'`),
      );
      git(dir, ['commit', '-qam', version]);
      git(dir, ['push', '-q', 'origin', 'main']);
      const run = await waitForRun(valve, session, app, i + 1);
      if (run.status !== 'succeeded') throw new Error(`run #${i + 1} ${run.status}`);
    }
    const devUrl = (
      await waitFor('dev to serve v2', async () => {
        const env = await environment('dev');
        return env.url && (await text(env.url)).includes('v2') ? env : undefined;
      })
    ).url!;

    const gitProcesses = (): GitProcess[] =>
      readFileSync(gitLog, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as GitProcess)
        .sort((a, b) => a.start - b.start);
    const serverLog = () =>
      readFileSync(join(valve.dataDir, 'logs', 'valve.log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { time: number; msg?: string; key?: string });
    type Sync = { commit: string; status: string; startedAt: string; finishedAt: string | null };
    const syncOf = (name: string, commit: string) =>
      waitFor(`the sync of ${commit.slice(0, 7)}`, async () => {
        const history = await api<{ syncs: Sync[] }>(
          valve,
          session.token,
          'GET',
          `/api/apps/${app}/environments/${name}/history?limit=5`,
        );
        return history.body.syncs.find((s) => s.commit === commit && s.finishedAt);
      });
    // Let the server go idle (the old instance stopped, state saved) before the next call.
    const settle = () => new Promise((resolve) => setTimeout(resolve, 500));

    /** One call, then everything up to the environment serving it and its sync finished. */
    const measure = async (
      kind: Call['kind'],
      name: string,
      path: string,
      body: unknown,
      url: () => Promise<string>,
      expected: string,
    ): Promise<Call> => {
      const sent = clock();
      const answer = await api<{ status: string; commit: string }>(
        valve,
        session.token,
        'POST',
        path,
        body,
      );
      const answered = clock();
      if (answer.status !== 201 || answer.body.status !== 'committed')
        throw new Error(`${kind}: ${answer.status} ${JSON.stringify(answer.body)}`);
      const address = await url();
      await waitFor(
        `${name} to serve ${expected}`,
        async () => (await text(address)).includes(expected),
        120_000,
        5,
      );
      const liveAt = clock();
      const sync = await syncOf(name, answer.body.commit);
      if (sync.status !== 'succeeded') throw new Error(`sync of ${kind}: ${sync.status}`);
      await settle();
      const syncStartedAt = Date.parse(sync.startedAt);
      const syncFinishedAt = Date.parse(sync.finishedAt!);
      const processes = gitProcesses();
      const during = processes.filter((p) => p.start >= sent && p.start <= answered);
      const commit = commitOf(during);
      const committedAt = commit.at(-1)?.end ?? answered;
      return {
        kind,
        environment: name,
        sent,
        answered,
        git: during,
        commit,
        syncStartedAt,
        syncFinishedAt,
        compareGit: processes.filter((p) => p.start >= committedAt && p.start <= syncStartedAt),
        progress: serverLog()
          .filter(
            (line) =>
              line.key === `${app}/${name}` &&
              line.msg &&
              line.time >= syncStartedAt - 5 &&
              line.time <= syncFinishedAt + 5,
          )
          .map((line) => ({
            label: line
              .msg!.replace(/\S+@sha256:[0-9a-f]+/g, '<image>')
              .replace(/https?:\/\/\S+/g, '<address>'),
            at: line.time - syncStartedAt,
          })),
        liveAt,
      };
    };

    const rollback = (version: string) =>
      measure(
        'rollback',
        'dev',
        `/api/apps/${app}/environments/dev/rollback`,
        { stepsBack: 1 },
        async () => devUrl,
        `version ${version}`,
      );
    // Asked once: a GET of the environment is work for the server too (it reads valve.yaml).
    let stageAddress: string | null = null;
    const stageUrl = async () =>
      (stageAddress ??= await waitFor(
        'stage to have an address',
        async () => (await environment('stage')).url,
      ));
    const promote = (version: string) =>
      measure(
        'promote',
        'stage',
        `/api/apps/${app}/promote`,
        { from: 'dev', to: 'stage' },
        stageUrl,
        `Howdy from hello (version ${version})`,
      );

    // Warm-up: stage's first deploy (its address is new) and a first rollback.
    console.log(`\nwarm-up (${valve.url}), then ${rounds} rounds`);
    await promote('v2');
    await rollback('v1');
    await promote('v1');
    const calls: Call[] = [];
    let version = 'v1';
    for (let round = 1; round <= rounds; round++) {
      version = version === 'v1' ? 'v2' : 'v1';
      const back = await rollback(version);
      const up = await promote(version);
      calls.push(back, up);
      for (const call of [back, up])
        console.log(
          `  round ${round} ${call.kind.padEnd(8)}: answer ${time(call.answered - call.sent)}, ` +
            `${call.git.length} git processes, live after ${time(call.liveAt - call.sent)}`,
        );
    }

    // The CLI, as a user runs it: its own process, waiting until the environment runs it.
    const configFile = join(work, 'cli.json');
    writeFileSync(
      configFile,
      JSON.stringify({ server: valve.url, username: session.username, token: session.token }),
    );
    const cli = (args: string[]) =>
      new Promise<number>((resolve, reject) => {
        const started = clock();
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args],
          {
            cwd: repoRoot,
            env: { ...process.env, VALVE_CONFIG: configFile, NO_COLOR: '1' },
            stdio: 'ignore',
          },
        );
        child.on('error', reject);
        child.on('close', (code) =>
          code === 0
            ? resolve(clock() - started)
            : reject(new Error(`valve ${args.join(' ')} exited ${code}`)),
        );
      });
    const cliTimes = { 'valve rollback': [] as number[], 'valve promote': [] as number[] };
    const cliStart: number[] = [];
    for (let i = 0; i < cliRuns; i++) {
      cliTimes['valve rollback'].push(await cli(['rollback', app, 'dev']));
      await settle();
      cliTimes['valve promote'].push(await cli(['promote', app, 'dev', 'stage']));
      await settle();
      cliStart.push(await cli(['--version']));
    }

    // ---- report ----
    const git0 = (c: Call) => c.git[0]?.start ?? c.answered;
    const commitStart = (c: Call) => c.commit[0]?.start ?? c.answered;
    const committed = (c: Call) => c.commit.at(-1)?.end ?? c.answered;
    const ready = (c: Call) => c.progress.find((p) => p.label.startsWith('draining'))?.at ?? null;
    for (const kind of ['promote', 'rollback'] as const) {
      const mine = calls.filter((c) => c.kind === kind);
      const m = (f: (c: Call) => number | null) => {
        const values = mine.map(f).filter((v): v is number => v !== null);
        return values.length ? time(median(values)) : '-';
      };
      const n = (f: (c: Call) => GitProcess[]) => String(median(mine.map((c) => f(c).length)));
      const reads = (c: Call) => c.git.filter((p) => !c.commit.includes(p));
      console.log(`\n${kind} (${mine[0]!.environment}), ${mine.length} calls (medians)`);
      printTable([
        ['', 'time', 'git processes'],
        ['POST sent -> answer (client)', m((c) => c.answered - c.sent), n((c) => c.git)],
        ['  sent -> first git process (http, auth, db)', m((c) => git0(c) - c.sent), ''],
        [
          '  reads (first git process -> commit starts)',
          m((c) => commitStart(c) - git0(c)),
          n(reads),
        ],
        [
          '  commit (rev-parse .. update-ref)',
          m((c) => committed(c) - commitStart(c)),
          n((c) => c.commit),
        ],
        ['  update-ref exited -> answer', m((c) => c.answered - committed(c)), ''],
        [
          'commit -> sync started (reconciler compare)',
          m((c) => c.syncStartedAt - committed(c)),
          n((c) => c.compareGit),
        ],
        ["sync started -> new process ready (app's)", m(ready), ''],
        [
          'new process ready -> sync finished (drain, stop)',
          m((c) => (ready(c) === null ? null : c.syncFinishedAt - c.syncStartedAt - ready(c)!)),
          '',
        ],
        ['POST sent -> sync finished', m((c) => c.syncFinishedAt - c.sent), ''],
        ['POST sent -> new version answers (client)', m((c) => c.liveAt - c.sent), ''],
      ]);
      console.log(
        `  git processes in the call: ${tally(
          mine.map((c) => c.git),
          median,
        )}`,
      );
      console.log(
        `  git processes, commit -> sync started: ${tally(
          mine.map((c) => c.compareGit),
          median,
        )}`,
      );
      const labels = new Map<string, number[]>();
      for (const call of mine)
        for (const event of call.progress)
          labels.set(event.label, [...(labels.get(event.label) ?? []), event.at]);
      console.log("  the target's apply, from the sync's start (server log):");
      for (const [name, offsets] of [...labels].sort((a, b) => median(a[1]) - median(b[1])))
        console.log(`    ${time(median(offsets)).padStart(9)}  ${name}`);
    }
    console.log(
      `\nCLI, ${cliRuns} runs each (medians; waits until the environment runs the commit)`,
    );
    for (const [command, times] of Object.entries(cliTimes))
      console.log(`  ${command.padEnd(15)} ${time(median(times))}`);
    console.log(`  valve --version ${time(median(cliStart))} (the CLI's own start)`);
    console.log(`\n  load average after: ${loadAverage()}`);
  } finally {
    await valve.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.env[GIT_LOG_ENV]) {
  logGitProcesses(process.env[GIT_LOG_ENV]);
} else {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '7' },
      cli: { type: 'string', default: '3' },
    },
  });
  const positive = (text: string, flag: string) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1)
      throw new Error(`${flag}: expected a positive integer`);
    return value;
  };
  await bench(positive(values.rounds, '--rounds'), positive(values.cli, '--cli'));
}
