/**
 * Deploys with real processes, through public interfaces only (HTTP API, git, the `valve`
 * CLI, HTTP to the apps): four versions pushed and a rollback three versions back that serves
 * version 1 again; a promotion that carries the same digest, rendered with the target
 * environment's settings; a promotion that waits for the approving team (the app's own
 * developer cannot approve); an environment that syncs manually (OutOfSync and a diff until
 * `valve sync`); a broken manifest pushed into the deploy repo by hand, reported with file and
 * line while the live version keeps serving; and a server restart that keeps the instances
 * (same pids) and goes on reconciling.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  api,
  cloneUrl,
  git,
  killProcessesUnder,
  repoRoot,
  runLog,
  signup,
  startValve,
  waitFor,
  waitForRun,
  type Session,
  type Valve,
} from './harness.js';

interface Environment {
  name: string;
  url: string | null;
  health: string;
  syncStatus: string;
  image: string | null;
  digest: string | null;
  deployCommit: string | null;
  desiredCommit: string | null;
  message: string | null;
  instances: { pid: number }[];
}
interface Deploy {
  commit: string;
  kind: string;
  digest: string | null;
  author: string;
  rolledBackTo: string | null;
  promotedFrom: { environment: string; commit: string } | null;
  live: boolean;
}
interface Approval {
  id: string;
  team: string;
  status: string;
  summary: string;
  commit: string | null;
}
type Change =
  | { status: 'committed'; commit: string; environment: string }
  | { status: 'pending'; approval: Approval };

const app = 'dev/hello';
const pollEnv = { VALVE_DEPLOY_POLL_SECONDS: '1' };
const dataDir = mkdtempSync(join(tmpdir(), 'valve-deploy-data-'));
const work = mkdtempSync(join(tmpdir(), 'valve-deploy-'));
const configFile = join(work, 'config.json');
let valve: Valve;
let alice: Session;
let bob: Session;
const digests: string[] = [];
let runs = 0;

before(async () => {
  valve = await startValve({ dataDir, env: pollEnv });
  alice = await signup(valve, 'alice', 'dev');
  bob = await signup(valve, 'bob', 'ops');
  const created = await api(valve, alice.token, 'POST', '/api/apps', {
    team: 'dev',
    name: 'hello',
    template: 'node-http',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  git(work, ['clone', '-q', cloneUrl(valve, alice, app), join(work, 'hello')]);
});

after(async () => {
  await valve?.stop();
  killProcessesUnder(dataDir);
  rmSync(work, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

/** The steps build on each other: after a failure the rest are skipped. */
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

async function environment(name: string, session = alice): Promise<Environment> {
  const found = await api<Environment>(
    valve,
    session.token,
    'GET',
    `/api/apps/${app}/environments/${name}`,
  );
  assert.equal(found.status, 200, JSON.stringify(found.body));
  return found.body;
}

const text = async (url: string) => (await fetch(url)).text();

async function serves(name: string, expected: string): Promise<Environment> {
  return waitFor(`${name} to serve "${expected}"`, async () => {
    const env = await environment(name);
    return env.url && env.syncStatus === 'Synced' && (await text(env.url)) === expected
      ? env
      : undefined;
  });
}

function setVersion(version: string) {
  const file = join(work, 'hello', 'greeting.js');
  writeFileSync(
    file,
    readFileSync(file, 'utf8').replace(/VERSION = '[^']*'/, `VERSION = '${version}'`),
  );
}

async function push(message: string) {
  const dir = join(work, 'hello');
  git(dir, ['commit', '-qam', message]);
  git(dir, ['push', '-q', 'origin', 'main']);
  const run = await waitForRun(valve, alice, app, ++runs);
  assert.equal(run.status, 'succeeded', await runLog(valve, alice, app, runs));
}

async function history(name: string): Promise<Deploy[]> {
  const found = await api<{ deploys: Deploy[] }>(
    valve,
    alice.token,
    'GET',
    `/api/apps/${app}/environments/${name}/history`,
  );
  assert.equal(found.status, 200);
  return found.body.deploys;
}

/** `valve ...args` as its own process, logged in as alice (or `as`); must succeed. */
function cli(args: string[], as: Session = alice): Promise<string> {
  writeFileSync(
    configFile,
    JSON.stringify({ server: valve.url, username: as.username, token: as.token }),
  );
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args],
      { cwd: repoRoot, env: { ...process.env, VALVE_CONFIG: configFile, NO_COLOR: '1' } },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(stdout)
        : reject(new Error(`valve ${args.join(' ')} exited ${code}\n${stdout}\n${stderr}`)),
    );
  });
}

step('four deploys, then a rollback three versions back serves version 1 again', async () => {
  for (const version of ['v1', 'v2', 'v3', 'v4']) {
    setVersion(version);
    await push(`version ${version}`);
    const env = await serves('dev', `Hello from hello (version ${version})\n`);
    digests.push(env.digest!);
  }
  assert.equal(new Set(digests).size, 4);
  const before = await history('dev');
  assert.deepEqual(
    before.slice(0, 4).map((d) => d.digest),
    [...digests].reverse(),
  );

  const rollback = await api<Change>(
    valve,
    alice.token,
    'POST',
    `/api/apps/${app}/environments/dev/rollback`,
    { stepsBack: 3 },
  );
  assert.equal(rollback.status, 201, JSON.stringify(rollback.body));
  const env = await serves('dev', 'Hello from hello (version v1)\n');
  assert.equal(env.digest, digests[0]);

  const after = await history('dev');
  assert.equal(after[0]!.kind, 'rollback');
  assert.equal(after[0]!.rolledBackTo, before[3]!.commit);
  assert.equal(after[0]!.author, 'alice');
  assert.equal(after[0]!.live, true);
  // The deploy repo says so, in Git.
  const deployDir = join(work, 'hello-deploy');
  git(work, ['clone', '-q', cloneUrl(valve, alice, `${app}.deploy`), deployDir]);
  const message = git(deployDir, ['log', '-1', '--format=%an%n%B']).output;
  assert.match(message, /^alice\nrollback dev to [0-9a-f]{7} \(deploy of hello@sha256:/);
  assert.match(message, new RegExp(`^Rolled-Back-To: ${before[3]!.commit}$`, 'm'));

  const table = await cli(['history', app, 'dev']);
  assert.match(table, new RegExp(`^\\*\\s+${after[0]!.commit.slice(0, 7)}\\s.*rollback`, 'm'));
});

step('promotion carries the same digest, rendered with the target environment', async () => {
  const spec = join(work, 'hello', 'valve.yaml');
  writeFileSync(
    spec,
    readFileSync(spec, 'utf8') +
      [
        '  stage:',
        '    variables:',
        '      GREETING: Howdy',
        '  prod:',
        '    approval:',
        '      team: ops',
        '  qa:',
        '    sync:',
        '      automated: false',
        '',
      ].join('\n'),
  );
  await push('stage, prod and qa');
  const dev = await serves('dev', 'Hello from hello (version v4)\n');

  const promoted = await api<Change>(valve, alice.token, 'POST', `/api/apps/${app}/promote`, {
    from: 'dev',
    to: 'stage',
  });
  assert.equal(promoted.status, 201, JSON.stringify(promoted.body));
  const stage = await serves('stage', 'Howdy from hello (version v4)\n');
  assert.equal(stage.digest, dev.digest, 'the same image, not a rebuild');
  assert.notEqual(stage.url, dev.url);
  const [deploy] = await history('stage');
  assert.equal(deploy!.kind, 'promote');
  assert.deepEqual(deploy!.promotedFrom, { environment: 'dev', commit: dev.desiredCommit });
});

step('promotion to prod waits for a member of the approving team', async () => {
  const stage = await environment('stage');
  const said = await cli(['promote', app, 'stage', 'prod']);
  assert.match(said, /^waiting for approval by a member of team ops/);
  const pending = await api<Approval[]>(valve, alice.token, 'GET', `/api/apps/${app}/approvals`);
  const approval = pending.body[0]!;
  assert.equal(approval.status, 'pending');
  assert.equal(approval.team, 'ops');
  assert.match(approval.summary, /^promote stage -> prod: hello@sha256:/);
  assert.ok(said.includes(`valve approve ${app} --id ${approval.id}`), said);
  assert.equal((await environment('prod')).image, null, 'nothing deployed before the approval');

  // Alice develops the app but is not in team ops.
  const refused = await api<{ error: { code: string; message: string } }>(
    valve,
    alice.token,
    'POST',
    `/api/apps/${app}/approvals/${approval.id}/approve`,
    {},
  );
  assert.equal(refused.status, 403);
  assert.match(refused.body.error.message, /only members of team ops/);

  // Bob is in ops only: he reads the environments and the approvals his team decides, changes
  // no environment (403) and sees nothing else of the app (404).
  assert.equal((await api(valve, bob.token, 'GET', `/api/apps/${app}/environments`)).status, 200);
  assert.equal(
    (await api(valve, bob.token, 'POST', `/api/apps/${app}/environments/prod/sync`, {})).status,
    403,
  );
  assert.equal((await api(valve, bob.token, 'GET', `/api/apps/${app}/runs`)).status, 404);
  const seen = await api<{ access: string; lastRun: unknown }>(
    valve,
    bob.token,
    'GET',
    `/api/apps/${app}`,
  );
  assert.equal(seen.status, 200, 'the app itself, as an approver sees it (valve status)');
  assert.deepEqual([seen.body.access, seen.body.lastRun], ['approver', null]);
  assert.match(await cli(['status', app], bob), /you approve changes to it/);
  const listed = await api<Approval[]>(valve, bob.token, 'GET', `/api/apps/${app}/approvals`);
  assert.equal(listed.status, 200);
  assert.deepEqual(
    listed.body.map((a) => [a.id, a.status]),
    [[approval.id, 'pending']],
  );
  assert.match(
    await cli(['approve', app, '-m', 'ship it'], bob),
    /^approved: promote stage -> prod: hello@sha256:[0-9a-f]{12} \(source [0-9a-f]{7}\) \(deploy repo [0-9a-f]{12}\)/,
  );
  const approved = await api<Approval>(
    valve,
    bob.token,
    'GET',
    `/api/apps/${app}/approvals/${approval.id}`,
  );
  assert.equal(approved.body.status, 'approved');
  assert.ok(approved.body.commit);
  const prod = await waitFor('prod to run the promoted image', async () => {
    const env = await environment('prod');
    return env.syncStatus === 'Synced' && env.health === 'healthy' ? env : undefined;
  });
  assert.equal(prod.digest, stage.digest);
  assert.equal(await text(prod.url!), 'Hello from hello (version v4)\n');
});

step('an environment that syncs manually is OutOfSync with a diff until it is synced', async () => {
  const promoted = await api<Change>(valve, alice.token, 'POST', `/api/apps/${app}/promote`, {
    from: 'dev',
    to: 'qa',
  });
  assert.equal(promoted.status, 201, JSON.stringify(promoted.body));
  const commit = (promoted.body as { commit: string }).commit;
  const waiting = await waitFor('qa to be OutOfSync', async () => {
    const env = await environment('qa');
    return env.desiredCommit === commit && env.syncStatus === 'OutOfSync' ? env : undefined;
  });
  assert.equal(waiting.health, 'missing');
  const diff = await cli(['diff', app, 'qa']);
  assert.match(diff, /^qa: OutOfSync/);
  assert.match(diff, /^Deployment\/hello {2}\(envs\/qa\/deployment\.yaml:1\)\n\+ not live yet/m);
  // Still not applied: a poll (every second here) does not sync it.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.equal((await environment('qa')).syncStatus, 'OutOfSync');

  const synced = await cli(['sync', app, 'qa']);
  assert.match(synced, /^sync succeeded/);
  const qa = await serves('qa', 'Hello from hello (version v4)\n');
  assert.equal(qa.digest, (await environment('dev')).digest);
  assert.match(await cli(['diff', app, 'qa']), /no differences/);
});

step(
  'a broken manifest pushed by hand is reported with file and line; the live version keeps serving',
  async () => {
    const before = await environment('dev');
    const deployDir = join(work, 'hello-deploy');
    git(deployDir, ['pull', '-q', 'origin', 'main']);
    const file = join(deployDir, 'envs/dev/deployment.yaml');
    const original = readFileSync(file, 'utf8');
    const line = original.split('\n').findIndex((l) => l.startsWith('  replicas:')) + 1;
    assert.ok(line > 0, original);
    writeFileSync(file, original.replace(/^ {2}replicas: \d+$/m, '  replicas: many'));
    git(deployDir, ['commit', '-qam', 'scale by hand']);
    git(deployDir, ['push', '-q', 'origin', 'main']);

    const broken = await waitFor('the broken manifest to be reported', async () => {
      const env = await environment('dev');
      return env.message?.includes('deployment.yaml') ? env : undefined;
    });
    assert.match(
      broken.message!,
      new RegExp(`envs/dev/deployment\\.yaml:${line}:\\d+: spec\\.replicas: `),
    );
    assert.equal(broken.syncStatus, 'Unknown');
    for (let i = 0; i < 10; i++) {
      const response = await fetch(before.url!);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), 'Hello from hello (version v4)\n');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const still = await environment('dev');
    assert.equal(still.digest, before.digest);
    assert.deepEqual(
      still.instances.map((i) => i.pid),
      before.instances.map((i) => i.pid),
      'the live version was not touched',
    );

    git(deployDir, ['revert', '--no-edit', 'HEAD']);
    git(deployDir, ['push', '-q', 'origin', 'main']);
    const fixed = await waitFor('dev to be Synced again', async () => {
      const env = await environment('dev');
      return env.syncStatus === 'Synced' && env.message === null ? env : undefined;
    });
    assert.deepEqual(
      fixed.instances.map((i) => i.pid),
      before.instances.map((i) => i.pid),
    );
  },
);

step('a restarted server keeps the instances and goes on reconciling', async () => {
  const before = await Promise.all(['dev', 'stage', 'prod', 'qa'].map((e) => environment(e)));
  await valve.stop();
  valve = await startValve({ dataDir, env: pollEnv });
  // Two polls after the restart: nothing was re-applied.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  for (const env of before) {
    const now = await environment(env.name);
    assert.equal(now.syncStatus, 'Synced', `${env.name}: ${now.message}`);
    assert.equal(now.health, 'healthy', env.name);
    assert.equal(now.url, env.url);
    assert.deepEqual(
      now.instances.map((i) => i.pid),
      env.instances.map((i) => i.pid),
      `${env.name}'s instances were re-adopted, not restarted`,
    );
  }

  // A deploy after the restart: version 2's image, by digest, with the CLI.
  const out = await cli(['deploy', app, 'dev', '--image', digests[1]!]);
  assert.match(out, /^dev runs sha256:[0-9a-f]{12}.* \(healthy\)/m);
  const env = await serves('dev', 'Hello from hello (version v2)\n');
  assert.equal(env.digest, digests[1]);
});
