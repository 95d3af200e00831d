/**
 * The reconciler's cost when nothing changes, and its polls: a pass over a deploy repo whose
 * head has not moved spawns no git process, a moved head is read again (a deploy commit to one
 * environment re-reads that environment only), and a poll does not wait for a rollout under way
 * in one environment before it looks at the others.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { gitSpawns } from '../../test/support/git-spawns.js';
import { EventBus } from '../events.js';
import { GitService, runGit } from '../git/index.js';
import { openStore } from '../store/index.js';
import { deployMigrations } from './migrations.js';
import { DeployService } from './service.js';
import { FakeImages, FakeTarget, createAppRepo } from './testing.js';

const appSpec = (environments: string[]) => `apiVersion: score.dev/v1b1
metadata:
  name: hello
containers:
  web:
    image: .
service:
  ports:
    http: { port: 80, targetPort: 8080 }
environments:
${environments.map((env) => `  ${env}: {}\n`).join('')}`;

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'valve-reconciler-poll-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let run = 0;
async function setup(
  options: { pollIntervalMs?: number; environments?: string[]; start?: boolean } = {},
) {
  const { pollIntervalMs = 3_600_000, environments = ['dev', 'stage'], start = true } = options;
  run++;
  const store = await openStore(join(dir, `valve-${run}.db`), [deployMigrations]);
  const events = new EventBus();
  const git = new GitService(join(dir, `git-${run}`), events);
  const images = new FakeImages();
  const target = new FakeTarget();
  await createAppRepo(git, 'dev/hello', appSpec(environments));
  const deploy = new DeployService({
    db: store.db,
    git,
    events,
    target,
    images,
    registryHost: () => 'registry.test:7080',
    cipher: { encrypt: (plain) => plain, decrypt: (sealed) => sealed },
    pollIntervalMs,
  });
  await deploy.createEnvironments('dev', 'hello', environments, 'alice');
  if (start) await deploy.start();
  const version = async (n: number, env: string) => {
    images.add(`v${n}`, `${n}`.repeat(40));
    const result = await deploy.deploy('dev', 'hello', env, `v${n}`, 'alice');
    assert.equal(result.status, 'committed');
  };
  return { deploy, git, target, version, close: () => deploy.stop() };
}

test('a pass with no deploy-repo change spawns no git process; a new commit is read', async (t) => {
  const { deploy, git, target, version, close } = await setup();
  t.after(close);
  await version(1, 'dev');
  await deploy.reconcileApp('dev', 'hello');
  assert.equal(target.applies.length, 1);

  const before = gitSpawns.length;
  for (let i = 0; i < 3; i++) await deploy.reconcileApp('dev', 'hello');
  assert.equal(gitSpawns.length, before, 'no git process for a head that did not move');
  assert.equal((await deploy.environment('dev', 'hello', 'dev')).syncStatus, 'Synced');

  await version(2, 'dev');
  await deploy.reconcileApp('dev', 'hello');
  assert.equal(target.applies.length, 2, 'the new revision is applied');

  // A head kept in packed-refs (after `git gc`) is still read, through git.
  await runGit(git.pathOf('dev/hello.deploy.git'), ['pack-refs', '--all', '--prune']);
  await version(3, 'dev');
  await deploy.reconcileApp('dev', 'hello');
  assert.equal(target.applies.length, 3);
  const env = await deploy.environment('dev', 'hello', 'dev');
  assert.equal(env.syncStatus, 'Synced');
});

test('a deploy commit to one environment re-reads that folder only, whatever the number of environments', async (t) => {
  const environments = ['dev', 'stage', 'qa', 'prod'];
  // Not started: no poll and no commit event runs a pass the counts below would include.
  const { deploy, git, target, version, close } = await setup({ environments, start: false });
  t.after(close);
  const gitDir = git.pathOf('dev/hello.deploy.git');
  /** The commit git names as the last change of the folder. */
  const lastChange = async (env: string) =>
    (await runGit(gitDir, ['log', '-1', '--format=%H', 'main', '--', `envs/${env}`])).stdout
      .toString()
      .trim();
  const desiredCommits = async () => {
    const views = await deploy.environments('dev', 'hello');
    return Object.fromEntries(views.map((view) => [view.name, view.desiredCommit]));
  };
  for (const env of environments) await version(1, env);
  await deploy.reconcileApp('dev', 'hello');
  assert.equal(target.applies.length, environments.length);
  const before = await desiredCommits();

  await version(2, 'dev');
  const spawned = gitSpawns.length;
  await deploy.reconcileApp('dev', 'hello');
  // One `git cat-file --batch` reads the new head's envs tree, dev's files and the commit
  // walked to; one `git log` describes that commit. Before: one listing of envs/, then a
  // reader and a `git log -- envs/<env>` per environment (9 here).
  assert.deepEqual(gitSpawns.slice(spawned), ['cat-file', 'log']);
  assert.deepEqual(
    target.applies.slice(environments.length).map((spec) => spec.key),
    ['dev/hello/dev'],
    'dev is applied, the others are left alone',
  );

  const after = await desiredCommits();
  assert.notEqual(after.dev, before.dev);
  for (const env of environments) {
    assert.equal(
      after[env],
      await lastChange(env),
      `${env}: the last commit that changed its folder`,
    );
    if (env !== 'dev') assert.equal(after[env], before[env]);
  }

  // Two commits to stage before the next pass, the second putting back what the first changed:
  // the folder's tree id is the one read before, its commit is the second (as git log says).
  await version(3, 'stage');
  await version(1, 'stage');
  await deploy.reconcileApp('dev', 'hello');
  assert.equal(target.applies.length, environments.length + 1, 'stage runs v1 already');
  const restored = await desiredCommits();
  assert.notEqual(restored.stage, before.stage);
  for (const env of environments) assert.equal(restored[env], await lastChange(env));
});

test('a poll does not wait for a rollout under way before it looks at other environments', async (t) => {
  const { deploy, target, version, close } = await setup({ pollIntervalMs: 20 });
  t.after(close);
  await version(1, 'stage');
  await deploy.reconcileApp('dev', 'hello');
  const stage = 'dev/hello/stage';
  assert.ok(target.running.has(stage));

  // dev's apply (a long rollout) waits until released.
  let release = () => {};
  target.gates.set('dev/hello/dev', new Promise<void>((resolve) => (release = resolve)));
  t.after(() => release());
  await version(1, 'dev');
  for (let i = 0; i < 250 && !target.applies.some((s) => s.key === 'dev/hello/dev'); i++)
    await sleep(20);
  assert.ok(
    target.applies.some((s) => s.key === 'dev/hello/dev'),
    'dev apply started',
  );

  const seen = target.statusCalls.get(stage) ?? 0;
  for (let i = 0; i < 250 && (target.statusCalls.get(stage) ?? 0) < seen + 3; i++) await sleep(20);
  assert.ok(
    (target.statusCalls.get(stage) ?? 0) >= seen + 3,
    'polls keep looking at stage while dev is busy',
  );
  assert.ok(!target.running.has('dev/hello/dev'), 'dev is still applying');
  release();
  await deploy.reconcileApp('dev', 'hello');
  assert.ok(target.running.has('dev/hello/dev'));
});
