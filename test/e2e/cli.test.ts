/**
 * The `valve` CLI as a real process (`node --import tsx src/cli/main.ts`, its login saved in a
 * temporary VALVE_CONFIG) against the real server: sign-up and apps; secrets set from stdin and
 * from --value, listed by name with their values never printed; a workflow dispatched with
 * typed inputs and followed with -f until it succeeds (log, progress, secret masked); runs
 * listed with filters and across apps; a failed run re-run with --failed; approvals decided
 * from the command line (one of two pending ones needs --job); logs of one job; cancel; status.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  api,
  cloneUrl,
  git,
  repoRoot,
  startValve,
  waitFor,
  waitForRun,
  type Session,
  type Valve,
} from './harness.js';

const username = 'cleo';
const password = 'correct horse battery';
const team = 'dev';
const appName = 'cli';
const app = `${team}/${appName}`;
const SECRET_VALUE = 'cli-secret-value-8f2b1c';
const TEAM_SECRET_VALUE = 'team-secret-value-77aa10';

let valve: Valve;
let work: string;
let configFile: string;
let session: Session;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `valve ...args` as its own process; resolves when it exits, whatever the exit code. */
function valveCli(args: string[], input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args],
      {
        cwd: repoRoot,
        env: { ...process.env, VALVE_CONFIG: configFile, VALVE_PASSWORD: '' },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** `valve ...args` that must succeed; returns its standard output. */
async function ok(args: string[], input?: string): Promise<string> {
  const result = await valveCli(args, input);
  assert.equal(
    result.code,
    0,
    `valve ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`,
  );
  return result.stdout;
}

/** `valve ...args` that must fail; returns its standard error. */
async function fails(args: string[], input?: string): Promise<string> {
  const result = await valveCli(args, input);
  assert.notEqual(result.code, 0, `valve ${args.join(' ')} should fail:\n${result.stdout}`);
  return result.stderr;
}

interface Job {
  key: string;
  status: string;
  environment: { name: string; approval: { status: string; comment: string | null } | null } | null;
  steps: { status: string }[];
}
interface Run {
  number: number;
  status: string;
  event: string;
  rerunOf: number | null;
  jobs: Job[];
}

const getRun = async (number: number) =>
  (await api<Run>(valve, session.token, 'GET', `/api/apps/${app}/runs/${number}`)).body;

const jobOf = (run: Run, key: string) => {
  const job = run.jobs.find((j) => j.key === key);
  assert.ok(job, `no job ${key} in ${run.jobs.map((j) => j.key).join(', ')}`);
  return job;
};

/** "#12" rows of a `valve runs` table. */
const runNumbers = (table: string) =>
  [...table.matchAll(/^#(\d+)\s/gm)].map((match) => Number(match[1]));

/** "started run #12 of ..." */
const startedRun = (stdout: string) => {
  const match = /started run #(\d+)/.exec(stdout);
  assert.ok(match, `no run number in: ${stdout}`);
  return Number(match[1]);
};

/**
 * The steps build on each other (one user, one app, runs numbered in order): after a failure
 * the rest are skipped instead of each failing for the same reason.
 */
let earlierStepFailed = false;
function step(name: string, body: () => Promise<void>) {
  test(name, async (t) => {
    if (earlierStepFailed) return t.skip('an earlier step failed');
    try {
      await body();
    } catch (error) {
      earlierStepFailed = true;
      throw error;
    }
  });
}

before(async () => {
  valve = await startValve();
  work = mkdtempSync(join(tmpdir(), 'valve-cli-'));
  configFile = join(work, 'config', 'valve.json');
});

after(async () => {
  await valve?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

step('signup saves a login that later commands use; apps create and list', async () => {
  const out = await ok(
    ['signup', '--server', valve.url, '--username', username, '--team', team, '--password-stdin'],
    `${password}\n`,
  );
  assert.match(out, /signed up cleo: admin of team dev/);
  assert.equal(
    statSync(configFile).mode & 0o777,
    0o600,
    'the saved token is readable by its owner only',
  );
  const saved = JSON.parse(readFileSync(configFile, 'utf8')) as { token: string };
  session = { username, team, token: saved.token };
  assert.match(await ok(['whoami']), /^cleo\n {2}dev: admin/);

  assert.match(await ok(['apps', 'create', app]), /created dev\/cli from node-http/);
  assert.match(await ok(['apps']), /dev\/cli\s+dev/);
});

step('secrets: set from stdin and --value, listed by name, values never printed', async () => {
  const outputs: string[] = [];
  const run = async (args: string[], input?: string) => {
    const out = await ok(args, input);
    outputs.push(out);
    return out;
  };
  assert.match(
    await run(['secrets', 'set', app, 'API_TOKEN'], `${SECRET_VALUE}\n`),
    /set secret API_TOKEN for dev\/cli/,
  );
  await run(['secrets', 'set', app, 'EXTRA', '--value', 'extra-value-123']);
  assert.match(
    await run(['secrets', 'set', '--team', team, 'SHARED', '--value', TEAM_SECRET_VALUE]),
    /for team dev/,
  );

  const listed = await run(['secrets', 'list', app]);
  assert.match(listed, /^API_TOKEN\s+app\s/m);
  assert.match(listed, /^EXTRA\s+app\s/m);
  assert.match(listed, /^SHARED\s+team\s/m, "an app's list shows its team's secrets too");
  assert.match(await run(['secrets', 'list', '--team', team]), /^SHARED\s+team/m);

  assert.match(await run(['secrets', 'rm', app, 'EXTRA']), /deleted secret EXTRA/);
  assert.doesNotMatch(await run(['secrets', 'list', app]), /EXTRA/);
  assert.match(await fails(['secrets', 'rm', app, 'EXTRA']), /NOT_FOUND/);
  assert.match(await fails(['secrets', 'set', app]), /expected the secret NAME/);

  for (const out of outputs) {
    assert.ok(
      !out.includes(SECRET_VALUE) && !out.includes(TEAM_SECRET_VALUE),
      `a value was printed:\n${out}`,
    );
  }
  // The server has them: the API lists the names.
  const names = await api<{ name: string }[]>(
    valve,
    session.token,
    'GET',
    `/api/apps/${app}/secrets`,
  );
  assert.deepEqual(
    names.body.map((s) => s.name),
    ['API_TOKEN'],
  );
});

step('workflows pushed: a push run of a flaky workflow fails', async () => {
  const dir = join(work, appName);
  git(work, ['clone', '-q', cloneUrl(valve, session, app), dir]);
  // Only this test's workflows (the template's build-and-deploy is not what is tested here).
  rmSync(join(dir, '.valve/workflows'), { recursive: true, force: true });
  mkdirSync(join(dir, '.valve/workflows'), { recursive: true });
  const workflows: Record<string, string> = {
    'release.yml': `name: release
on:
  workflow_dispatch:
    inputs:
      who:
        type: string
        required: true
      count:
        type: number
        default: 1
      loud:
        type: boolean
        default: false
      flavour:
        type: choice
        options: [plain, spicy]
        default: plain
jobs:
  build:
    steps:
      - run: echo "hello \${{ inputs.who }} count=\${{ inputs.count }} loud=\${{ inputs.loud }} flavour=\${{ inputs.flavour }}"
      - run: echo "token=$TOKEN shared=$SHARED"
        env:
          TOKEN: \${{ secrets.API_TOKEN }}
          SHARED: \${{ secrets.SHARED }}
  test:
    needs: build
    strategy:
      matrix:
        n: [1, 2]
    steps:
      - run: echo "test entry \${{ matrix.n }}"
`,
    // Fails until the LUCK secret exists (steps run sandboxed: a secret is what can change).
    'flaky.yml': `on: push
jobs:
  prepare:
    steps:
      - run: echo prepared
  flaky:
    needs: prepare
    steps:
      - run: if [ -n "$LUCK" ]; then echo "second time lucky"; else echo "first time fails"; exit 1; fi
        env:
          LUCK: \${{ secrets.LUCK }}
`,
    'gate.yml': `on:
  workflow_dispatch: {}
jobs:
  build:
    steps:
      - run: echo built
  ship-eu:
    needs: build
    environment: prod
    steps:
      - run: echo "shipped eu"
  ship-us:
    needs: build
    environment: prod
    steps:
      - run: echo "shipped us"
`,
  };
  for (const [file, text] of Object.entries(workflows))
    writeFileSync(join(dir, '.valve/workflows', file), text);
  // Deploys to prod wait for a member of this very team.
  const spec = join(dir, 'valve.yaml');
  writeFileSync(
    spec,
    `${readFileSync(spec, 'utf8')}  prod:\n    approval:\n      team: ${team}\n      timeoutMinutes: 30\n`,
  );
  git(dir, ['add', '-A']);
  git(dir, ['commit', '-qm', 'CLI test workflows']);
  git(dir, ['push', '-q', 'origin', 'HEAD:main']);

  const first = (await waitForRun(valve, session, app, 1)) as unknown as Run;
  assert.equal(first.status, 'failed');
  assert.equal(jobOf(first, 'prepare').status, 'succeeded');
  assert.equal(jobOf(first, 'flaky').status, 'failed');
});

let releaseRun: number;

step('run with typed inputs and -f follows the log until it succeeds; secrets masked', async () => {
  // Refused before anything starts: an input the workflow does not declare.
  assert.match(
    await fails(['run', app, '-w', 'release.yml', '-i', 'nope=1']),
    /has no input "nope"/,
  );
  // Refused by the server: a required input missing.
  assert.match(await fails(['run', app, '-w', 'release.yml']), /inputs\.who/);
  // Several workflows can be dispatched: which one must be said.
  assert.match(
    await fails(['run', app]),
    /which workflow\? --workflow one of: .*gate\.yml.*release\.yml|release\.yml.*gate\.yml/,
  );

  const result = await valveCli([
    'run',
    app,
    '--workflow',
    'release.yml',
    '--ref',
    'main',
    '-i',
    'who=world',
    '-i',
    'count=2',
    '-i',
    'loud=true',
    '-i',
    'flavour=spicy',
    '-f',
  ]);
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  releaseRun = startedRun(result.stdout);
  assert.match(result.stdout, new RegExp(`/apps/dev/cli/runs/${releaseRun}`));
  assert.match(result.stdout, /build \| hello world count=2 loud=true flavour=spicy/);
  assert.match(result.stdout, /token=\*\*\* shared=\*\*\*/);
  assert.match(result.stdout, /test \(1\) \| test entry 1/);
  assert.match(result.stdout, /test \(2\) \| test entry 2/);
  assert.ok(!result.stdout.includes(SECRET_VALUE) && !result.stderr.includes(SECRET_VALUE));
  assert.ok(!result.stdout.includes(TEAM_SECRET_VALUE));
  // Progress: each job's final state, then the run's.
  assert.match(result.stderr, /==> build: succeeded/);
  assert.match(result.stderr, /==> test \(2\): succeeded/);
  assert.match(result.stderr, new RegExp(`==> run #${releaseRun} of dev/cli succeeded`));

  const run = await getRun(releaseRun);
  assert.equal(run.status, 'succeeded');
  assert.equal(run.event, 'workflow_dispatch');
});

step('logs of one job: a key, or a job id for all its matrix entries', async () => {
  const build = await ok(['logs', app, String(releaseRun), '--job', 'build']);
  assert.match(build, /hello world/);
  assert.doesNotMatch(build, /test entry/);
  const tests = await ok(['logs', app, String(releaseRun), '--job', 'test']);
  assert.match(tests, /test entry 1/);
  assert.match(tests, /test entry 2/);
  assert.doesNotMatch(tests, /hello world/);
  const one = await ok(['logs', app, String(releaseRun), '-j', 'test (2)']);
  assert.match(one, /test entry 2/);
  assert.doesNotMatch(one, /test entry 1/);
  assert.match(
    await fails(['logs', app, String(releaseRun), '--job', 'nope']),
    /no job "nope"; its jobs: build, test \(1\), test \(2\)/,
  );
  // Following a finished run prints it all and exits with its outcome.
  assert.match(await ok(['logs', app, String(releaseRun), '-f', '--job', 'build']), /hello world/);
});

let rerunNumber: number;

step('rerun --failed runs only the failed job again and -f follows it to success', async () => {
  await ok(['secrets', 'set', app, 'LUCK', '--value', 'lucky-charm']);
  const result = await valveCli(['rerun', app, '1', '--failed', '-f']);
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  rerunNumber = startedRun(result.stdout);
  assert.match(result.stdout, /second time lucky/);
  const run = await getRun(rerunNumber);
  assert.equal(run.status, 'succeeded');
  assert.equal(run.event, 'rerun');
  assert.equal(run.rerunOf, 1);
  assert.ok(
    jobOf(run, 'prepare').steps.every((s) => s.status === 'skipped'),
    'the job that succeeded is not run again',
  );
  // A run that fails makes `logs -f` exit non-zero.
  assert.equal((await valveCli(['logs', app, '1', '-f'])).code, 1);
});

step('runs lists with filters, and across apps with --all', async () => {
  const all = await ok(['runs', app]);
  assert.deepEqual(runNumbers(all), [rerunNumber, releaseRun, 1]);
  assert.match(all, /^RUN\s+STATUS\s+WORKFLOW\s+EVENT\s+BRANCH/m);
  assert.deepEqual(runNumbers(await ok(['runs', app, '--status', 'failed'])), [1]);
  assert.deepEqual(runNumbers(await ok(['runs', app, '--event', 'workflow_dispatch'])), [
    releaseRun,
  ]);
  assert.match(await ok(['runs', app, '--event', 'rerun']), /rerun of #1/);
  assert.deepEqual(runNumbers(await ok(['runs', app, '--branch', 'main', '--limit', '2'])), [
    rerunNumber,
    releaseRun,
  ]);
  assert.deepEqual(
    runNumbers(await ok(['runs', app, '--actor', username, '--status', 'succeeded'])),
    [rerunNumber, releaseRun],
  );
  assert.match(await ok(['runs', app, '--branch', 'nowhere']), /no runs match/);
  assert.match(await fails(['runs', app, '--status', 'sideways']), /INPUT_INVALID/);

  const everywhere = await ok(['runs', '--all', '--status', 'failed']);
  assert.match(everywhere, /^RUN\s+APP\s+STATUS/m);
  assert.match(everywhere, /^#1\s+dev\/cli\s+failed/m);
  assert.match(await fails(['runs']), /expected <team>\/<app>, or --all/);
});

step('approve: the only pending approval, or --job when several wait; --reject', async () => {
  const gate = startedRun(await ok(['run', app, '-w', 'gate.yml']));
  await waitFor('both ship jobs to wait for approval', async () => {
    const run = await getRun(gate);
    return run.jobs.filter((j) => j.environment?.approval?.status === 'pending').length === 2;
  });
  const ambiguous = await fails(['approve', app, String(gate)]);
  assert.match(ambiguous, /waits for 2 approvals; choose one with --job/);
  assert.match(ambiguous, /"ship-eu" \(environment prod, approved by team dev\)/);
  assert.match(ambiguous, /"ship-us"/);

  assert.match(
    await ok(['approve', app, String(gate), '--job', 'ship-eu', '--comment', 'looks good']),
    /approved the deployment of "ship-eu" to prod/,
  );
  assert.match(
    await fails(['approve', app, String(gate), '--job', 'ship-eu']),
    /is already approved/,
  );
  // Now only one waits: no --job needed.
  assert.match(
    await ok(['approve', app, String(gate), '--reject', '-m', 'not today']),
    /rejected the deployment of "ship-us" to prod/,
  );

  const run = (await waitForRun(valve, session, app, gate)) as unknown as Run;
  assert.equal(run.status, 'failed');
  assert.equal(jobOf(run, 'ship-eu').status, 'succeeded');
  assert.equal(jobOf(run, 'ship-eu').environment?.approval?.status, 'approved');
  assert.equal(jobOf(run, 'ship-eu').environment?.approval?.comment, 'looks good');
  assert.equal(jobOf(run, 'ship-us').environment?.approval?.status, 'rejected');
  assert.notEqual(jobOf(run, 'ship-us').status, 'succeeded');
  assert.match(await ok(['logs', app, String(gate), '--job', 'ship-eu']), /shipped eu/);
  assert.match(await fails(['approve', app, String(gate)]), /waits for no approval/);
});

step('cancel stops a run that waits; status shows the last run and its commit status', async () => {
  const gate = startedRun(await ok(['run', app, '-w', 'gate.yml']));
  await waitFor('the gate run to wait for approval', async () =>
    (await getRun(gate)).jobs.some((j) => j.environment?.approval?.status === 'pending'),
  );
  assert.match(await ok(['cancel', app, String(gate)]), new RegExp(`cancelling run #${gate}`));
  const run = (await waitForRun(valve, session, app, gate)) as unknown as Run;
  assert.equal(run.status, 'cancelled');
  assert.match(await fails(['cancel', app, String(gate)]), /PIPE_RUN_NOT_CANCELLABLE/);

  const status = await ok(['status', app]);
  assert.match(status, new RegExp(`last run: #${gate} cancelled \\(gate\\.yml on main`));
  // Every workflow's newest run of that commit counts; the cancelled one makes it a failure.
  assert.match(status, /commit [0-9a-f]{7}: failure \(.*gate\.yml #\d+ cancelled/);
});
