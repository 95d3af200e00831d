/**
 * The deploy service with real git and a real database, and a fake target (it records what it
 * is asked and reports what a test tells it): deploy commits, the reconciler's decisions
 * (apply, manual sync, drift, prune, broken manifests, unregistered targets, restart),
 * promotion, rollback, approvals and history. Real processes: test/e2e/deploy.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { EventBus } from '../events.js';
import { GitService, logCommits, readFileAt, listFilesAt } from '../git/index.js';
import { openStore, type Store } from '../store/index.js';
import { deployMigrations } from './migrations.js';
import { DeployService } from './service.js';
import { FakeImages, FakeTarget, createAppRepo } from './testing.js';

const appSpec = `apiVersion: score.dev/v1b1
metadata:
  name: hello
containers:
  web:
    image: .
    command: [node]
    args: [server.js]
service:
  ports:
    http: { port: 80, targetPort: 8080 }
environments:
  dev: {}
  stage: { replicas: 2 }
  prod:
    approval: { team: ops, timeoutMinutes: 30 }
  qa:
    sync: { automated: false }
  edge:
    target: k8s
`;

const alice = 'alice';
let dir: string;
let store: Store;
let git: GitService;
let events: EventBus;
let images: FakeImages;
let target: FakeTarget;
let cluster: FakeTarget;
let deploy: DeployService;
const deployGitDir = () => git.pathOf('dev/hello.deploy.git');

function newService() {
  return new DeployService({
    db: store.db,
    git,
    events,
    target,
    images,
    registryHost: () => 'registry.test:7080',
    cipher: {
      encrypt: (plain, aad) => `sealed:${aad}:${Buffer.from(plain).toString('base64')}`,
      decrypt: (sealed, aad) =>
        Buffer.from(sealed.slice(`sealed:${aad}:`.length), 'base64').toString(),
    },
    drivers: { kubernetes: () => cluster },
    pollIntervalMs: 3_600_000,
  });
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'valve-deploy-service-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let run = 0;
beforeEach(async () => {
  run++;
  store = await openStore(join(dir, `valve-${run}.db`), [deployMigrations]);
  events = new EventBus();
  git = new GitService(join(dir, `git-${run}`), events);
  images = new FakeImages();
  target = new FakeTarget();
  cluster = new FakeTarget('k8s');
  await createAppRepo(git, 'dev/hello', appSpec);
  deploy = newService();
  await deploy.createEnvironments('dev', 'hello', ['dev'], alice);
  await deploy.start();
});

const stop = () => deploy.stop();

/** Reconciles and returns the environment's view. */
async function settle(env = 'dev') {
  await deploy.reconcileApp('dev', 'hello');
  return deploy.environment('dev', 'hello', env);
}

async function deployVersion(n: number, env = 'dev') {
  const revision = `${n}`.repeat(40).slice(0, 40);
  const digest = images.add(`v${n}`, revision);
  const result = await deploy.deploy('dev', 'hello', env, `v${n}`, alice);
  assert.equal(result.status, 'committed');
  return { digest, revision, commit: result.status === 'committed' ? result.commit : '' };
}

/** Commits valve.yaml on the source repo's main branch, as a push would. */
async function commitSpec(content: string) {
  await git.commit(
    'dev/hello.git',
    {
      branch: 'main',
      changes: { 'valve.yaml': { content } },
      message: 'valve.yaml',
      author: { name: alice, email: 'alice@valve' },
    },
    alice,
  );
}

/** Waits until the app has every one of `names` (valve.yaml's are added on its commit event). */
async function untilEnvironments(names: string[]) {
  for (let tries = 0; tries < 100; tries++) {
    const have = (await deploy.environments('dev', 'hello')).map((env) => env.name);
    if (names.every((name) => have.includes(name))) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`environments ${names.join(', ')} did not appear`);
}

const names = async () => (await deploy.environments('dev', 'hello')).map((env) => env.name);

describe('deploy service', () => {
  test('a deploy is one commit with a readable subject, author and trailers, then applied', async (t) => {
    t.after(stop);
    const { digest, revision, commit } = await deployVersion(1);
    const [head] = await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 });
    assert.equal(head!.sha, commit);
    assert.equal(head!.subject, `deploy dev: hello@${digest.slice(0, 19)} (source 1111111)`);
    assert.equal(head!.author, alice);
    assert.match(head!.body, new RegExp(`^Image: registry\\.test:7080/dev/hello@${digest}$`, 'm'));
    assert.match(head!.body, new RegExp(`^Source-Commit: ${revision}$`, 'm'));

    const env = await settle();
    assert.equal(env.syncStatus, 'Synced');
    assert.equal(env.health, 'healthy');
    assert.equal(env.digest, digest);
    assert.equal(env.sourceCommit, revision);
    assert.equal(env.deployCommit, commit);
    assert.equal(target.applies.length, 1);
    assert.equal(target.applies[0]!.key, 'dev/hello/dev');
    assert.equal(env.lastSync?.status, 'succeeded');
    assert.equal(env.lastSync?.trigger, 'auto');
    assert.equal(env.lastSync?.actor, alice);

    // Nothing changed: another pass applies nothing.
    await settle();
    assert.equal(target.applies.length, 1);
    await assert.rejects(
      deploy.deploy('dev', 'hello', 'dev', 'v9', alice),
      /DEPLOY_IMAGE_UNAVAILABLE|not in the registry/,
    );
  });

  test('rollback three deploys back is a new commit with the folder of that deploy', async (t) => {
    t.after(stop);
    const versions = [];
    for (const n of [1, 2, 3, 4]) {
      versions.push(await deployVersion(n));
      await settle();
    }
    const result = await deploy.rollback('dev', 'hello', 'dev', { stepsBack: 3 }, alice);
    assert.equal(result.status, 'committed');
    const commit = result.status === 'committed' ? result.commit : '';
    const [head] = await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 });
    assert.equal(
      head!.subject,
      `rollback dev to ${versions[0]!.commit.slice(0, 7)} (deploy of hello@${versions[0]!.digest.slice(0, 19)})`,
    );
    assert.match(head!.body, new RegExp(`^Rolled-Back-To: ${versions[0]!.commit}$`, 'm'));
    for (const path of await listFilesAt(deployGitDir(), commit, 'envs/dev'))
      assert.deepEqual(
        await readFileAt(deployGitDir(), commit, path),
        await readFileAt(deployGitDir(), versions[0]!.commit, path),
        path,
      );

    const env = await settle();
    assert.equal(env.digest, versions[0]!.digest);
    assert.equal(target.running.get('dev/hello/dev')!.spec.image.digest, versions[0]!.digest);
    assert.equal(env.lastSync?.trigger, 'rollback');

    const history = await deploy.history('dev', 'hello', 'dev');
    assert.deepEqual(
      history.deploys.slice(0, 5).map((d) => [d.kind, d.digest]),
      [
        ['rollback', versions[0]!.digest],
        ['deploy', versions[3]!.digest],
        ['deploy', versions[2]!.digest],
        ['deploy', versions[1]!.digest],
        ['deploy', versions[0]!.digest],
      ],
    );
    assert.equal(history.deploys[0]!.rolledBackTo, versions[0]!.commit);
    assert.equal(history.deploys[0]!.live, true);
    assert.equal(history.deploys[0]!.author, alice);
    assert.equal(history.deploys[0]!.sourceCommit, versions[0]!.revision);
    assert.ok(history.syncs.some((s) => s.commit === commit && s.status === 'succeeded'));

    // By commit prefix, and the errors.
    const back = await deploy.rollback(
      'dev',
      'hello',
      'dev',
      { commit: versions[3]!.commit.slice(0, 8) },
      alice,
    );
    assert.equal(back.status, 'committed');
    await assert.rejects(
      deploy.rollback('dev', 'hello', 'dev', { stepsBack: 40 }, alice),
      /has 5 earlier deploy/,
    );
    await assert.rejects(
      deploy.rollback('dev', 'hello', 'dev', { commit: 'abcdef0' }, alice),
      /is not a deploy of dev/,
    );
  });

  test('promotion moves the exact digest, rendered with the target environment', async (t) => {
    t.after(stop);
    const { digest, revision, commit: devCommit } = await deployVersion(1);
    await settle();
    const promoted = await deploy.promote('dev', 'hello', 'dev', 'stage', alice);
    assert.equal(promoted.status, 'committed');
    const [head] = await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 });
    assert.equal(
      head!.subject,
      `promote dev -> stage: hello@${digest.slice(0, 19)} (source 1111111)`,
    );
    assert.match(head!.body, new RegExp(`^Promoted-From: dev ${devCommit}$`, 'm'));
    assert.match(head!.body, new RegExp(`^Source-Commit: ${revision}$`, 'm'));
    const stage = await settle('stage');
    assert.equal(stage.digest, digest);
    assert.equal(stage.sourceCommit, revision);
    assert.equal(target.running.get('dev/hello/stage')!.spec.replicas, 2, "stage's own replicas");
    assert.equal(stage.lastSync?.trigger, 'promote');
    await assert.rejects(deploy.promote('dev', 'hello', 'qa', 'dev', alice), /nothing is deployed/);
    await assert.rejects(
      deploy.promote('dev', 'hello', 'dev', 'nope', alice),
      /not in valve\.yaml/,
    );
  });

  test('promotion to an environment with approval waits for a member of the approving team', async (t) => {
    t.after(stop);
    const { digest } = await deployVersion(1);
    await settle();
    const before = (await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 }))[0]!.sha;
    const pending = await deploy.promote('dev', 'hello', 'dev', 'prod', alice);
    assert.equal(pending.status, 'pending');
    const approval = pending.status === 'pending' ? pending.approval : undefined!;
    assert.equal(approval.team, 'ops');
    assert.equal(approval.status, 'pending');
    assert.match(approval.summary, /^promote dev -> prod: hello@sha256:/);
    assert.equal(
      (await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 }))[0]!.sha,
      before,
      'nothing is committed before the approval',
    );

    await assert.rejects(
      deploy.decide({
        team: 'dev',
        app: 'hello',
        id: approval.id,
        decision: 'approve',
        username: alice,
        isMember: async (team) => team === 'dev',
      }),
      /only members of team ops can approve deployments to prod/,
    );
    const decided = await deploy.decide({
      team: 'dev',
      app: 'hello',
      id: approval.id,
      decision: 'approve',
      username: 'olga',
      comment: 'ship it',
      isMember: async (team) => team === 'ops',
    });
    assert.equal(decided.status, 'approved');
    assert.equal(decided.decidedBy, 'olga');
    const [head] = await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 });
    assert.equal(head!.sha, decided.commit);
    assert.equal(head!.author, alice, 'the author is who asked');
    assert.match(head!.body, /^Approved-By: olga$/m);
    assert.equal((await settle('prod')).digest, digest);
    await assert.rejects(
      deploy.decide({
        team: 'dev',
        app: 'hello',
        id: approval.id,
        decision: 'reject',
        username: 'olga',
        isMember: async () => true,
      }),
      /already approved/,
    );

    // A newer request supersedes a pending one; a rejected one commits nothing.
    const first = await deploy.deploy('dev', 'hello', 'prod', 'v1', alice);
    const second = await deploy.deploy('dev', 'hello', 'prod', 'v1', alice);
    assert.equal(first.status, 'pending');
    assert.equal(second.status, 'pending');
    const list = await deploy.approvals('dev', 'hello');
    assert.deepEqual(
      list.slice(0, 2).map((a) => a.status),
      ['pending', 'superseded'],
    );
    const rejected = await deploy.decide({
      team: 'dev',
      app: 'hello',
      id: list[0]!.id,
      decision: 'reject',
      username: 'olga',
      isMember: async () => true,
    });
    assert.equal(rejected.status, 'rejected');
    assert.equal(rejected.commit, null);
  });

  test('a broken manifest is reported with file and line, once, and the live version stays', async (t) => {
    t.after(stop);
    await deployVersion(1);
    await settle();
    const head = (await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 }))[0]!.sha;
    const good = (await readFileAt(deployGitDir(), head, 'envs/dev/deployment.yaml'))!.toString();
    const line = good.split('\n').findIndex((l) => l.startsWith('  replicas:')) + 1;
    await git.commit(
      'dev/hello.deploy.git',
      {
        branch: 'main',
        changes: {
          'envs/dev/deployment.yaml': {
            content: good.replace('  replicas: 1', '  replicas: two'),
          },
        },
        message: 'by hand',
        author: { name: 'bob', email: 'bob@example.com' },
      },
      'bob',
    );
    for (let i = 0; i < 3; i++) await settle();
    const env = await deploy.environment('dev', 'hello', 'dev');
    assert.equal(env.syncStatus, 'Unknown');
    assert.match(
      env.message!,
      new RegExp(`envs/dev/deployment\\.yaml:${line}:\\d+: spec\\.replicas`),
    );
    assert.equal(target.applies.length, 1, 'nothing applied');
    assert.equal(target.running.size, 1, 'the live version keeps running');
    const failed = (await deploy.history('dev', 'hello', 'dev')).syncs.filter(
      (s) => s.status === 'failed',
    );
    assert.equal(failed.length, 1, 'recorded once, not on every pass');
    const diff = await deploy.diff('dev', 'hello', 'dev');
    assert.match(diff.error!, /deployment\.yaml/);

    await git.commit(
      'dev/hello.deploy.git',
      {
        branch: 'main',
        changes: { 'envs/dev/deployment.yaml': { content: good } },
        message: 'fix',
        author: { name: 'bob', email: 'bob@example.com' },
      },
      'bob',
    );
    const fixed = await settle();
    assert.equal(fixed.syncStatus, 'Synced');
    assert.equal(fixed.message, null);
  });

  test('manual sync: OutOfSync with a diff until a sync is asked for', async (t) => {
    t.after(stop);
    await deployVersion(1, 'qa');
    let env = await settle('qa');
    assert.equal(env.syncStatus, 'OutOfSync');
    assert.equal(env.sync.automated, false);
    assert.equal(target.applies.length, 0);
    let diff = await deploy.diff('dev', 'hello', 'qa');
    assert.equal(diff.syncStatus, 'OutOfSync');
    assert.ok(
      diff.items.some((i) => i.resource === 'Deployment/hello' && i.path === '' && i.live === null),
    );

    const synced = await deploy.sync('dev', 'hello', 'qa', 'alice');
    assert.equal(synced.environment.syncStatus, 'Synced');
    assert.equal(synced.sync?.trigger, 'manual');
    assert.equal(synced.sync?.status, 'succeeded');
    assert.equal(target.applies.length, 1);

    const { digest } = await deployVersion(2, 'qa');
    env = await settle('qa');
    assert.equal(env.syncStatus, 'OutOfSync');
    diff = await deploy.diff('dev', 'hello', 'qa');
    const image = diff.items.find((i) => i.path === 'spec.template.spec.containers[0].image');
    assert.ok(image, JSON.stringify(diff.items));
    assert.match(String(image.desired), new RegExp(`@${digest}$`));
    assert.deepEqual(
      diff.resources.map((r) => [r.resource, r.status]),
      [
        ['Deployment/hello', 'OutOfSync'],
        ['Ingress/hello', 'Synced'],
        ['Service/hello', 'Synced'],
      ],
    );
  });

  test('drift is recorded and repaired by the target; a changed image is applied again', async (t) => {
    t.after(stop);
    const { digest } = await deployVersion(1);
    await settle();
    target.running.get('dev/hello/dev')!.drift = ['file /app/server.js changed'];
    await settle();
    assert.deepEqual(target.repairs, ['dev/hello/dev']);
    const syncs = (await deploy.history('dev', 'hello', 'dev')).syncs;
    assert.ok(syncs.some((s) => s.status === 'drifted' && /server\.js changed/.test(s.message!)));
    assert.ok(syncs.some((s) => s.trigger === 'self-heal' && s.status === 'succeeded'));

    const running = target.running.get('dev/hello/dev')!;
    running.spec = {
      ...running.spec,
      image: { ...running.spec.image, digest: `sha256:${'e'.repeat(64)}` },
    };
    const env = await settle();
    assert.equal(target.applies.length, 2, 'applied again');
    assert.equal(target.running.get('dev/hello/dev')!.spec.image.digest, digest);
    assert.equal(env.syncStatus, 'Synced');
    assert.deepEqual(env.drift, []);
  });

  test('a failed apply is not retried by polls; the live version is left alone', async (t) => {
    t.after(stop);
    await deployVersion(1);
    await settle();
    target.failNext = 'instance inst_1 exited with code 1';
    await deployVersion(2);
    let env = await settle();
    await settle();
    assert.equal(target.applies.length, 2);
    assert.equal(env.syncStatus, 'OutOfSync');
    env = await deploy.environment('dev', 'hello', 'dev');
    assert.match(env.message!, /failed|exited/);
    assert.equal(env.lastSync?.status, 'failed');
    const synced = await deploy.sync('dev', 'hello', 'dev', alice);
    assert.equal(synced.environment.syncStatus, 'Synced');
    assert.equal(target.applies.length, 3);
  });

  test('a workload removed from the deploy repo is pruned from the target', async (t) => {
    t.after(stop);
    await deployVersion(1);
    await settle();
    const head = (await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 }))[0]!.sha;
    const paths = await listFilesAt(deployGitDir(), head, 'envs/dev');
    await git.commit(
      'dev/hello.deploy.git',
      {
        branch: 'main',
        changes: Object.fromEntries(paths.map((p) => [p, { content: null }])),
        message: 'remove dev',
        author: { name: 'bob', email: 'bob@example.com' },
      },
      'bob',
    );
    const env = await settle();
    assert.deepEqual(target.deletes, ['dev/hello/dev']);
    assert.equal(env.health, 'missing');
    assert.equal(env.syncStatus, 'Synced');
    assert.equal(env.lastSync?.trigger, 'prune');
    assert.equal(env.deployCommit, null, 'nothing deployed any more');
    assert.equal(env.desiredCommit, null, 'no folder');
  });

  test('an environment on a target the team was not given is an error, and nothing runs', async (t) => {
    t.after(stop);
    await deployVersion(1, 'edge');
    let env = await settle('edge');
    assert.equal(env.syncStatus, 'Unknown');
    assert.equal(env.message, 'target k8s is not registered for team dev');
    assert.equal(target.applies.length + cluster.applies.length, 0);

    const added = await deploy.addTarget(
      'dev',
      {
        name: 'k8s',
        kind: 'kubernetes',
        config: { server: 'https://k8s.test:6443', namespace: 'dev', token: 's3cret' },
      },
      alice,
    );
    assert.equal(added.config.token, '(sealed)');
    const listed = await deploy.listTargets('dev');
    assert.deepEqual(
      listed.map((t) => [t.name, t.kind, t.builtin]),
      [
        ['local', 'local', true],
        ['k8s', 'kubernetes', false],
      ],
    );
    assert.ok(!JSON.stringify(listed).includes('s3cret'), 'the token is never shown');
    await deploy.sync('dev', 'hello', 'edge', alice);
    env = await deploy.environment('dev', 'hello', 'edge');
    assert.equal(env.syncStatus, 'Synced');
    assert.equal(env.target, 'k8s');
    assert.equal(cluster.applies.length, 1);
    assert.equal(target.applies.length, 0);
    await assert.rejects(deploy.removeTarget('dev', 'k8s'), /still runs hello\/edge/);
    await assert.rejects(
      deploy.addTarget('dev', { name: 'k8s', kind: 'local', config: {} }, alice),
      /already has a target named k8s/,
    );
  });

  test("environments follow valve.yaml's order, then those it does not list by name", async (t) => {
    t.after(stop);
    // Rows made in another order: qa and stage by deploys, zeta and alpha by hand.
    await deployVersion(1, 'qa');
    await deployVersion(1, 'stage');
    await git.commit(
      'dev/hello.deploy.git',
      {
        branch: 'main',
        changes: { 'envs/zeta/.keep': { content: '' }, 'envs/alpha/.keep': { content: '' } },
        message: 'two folders by hand',
        author: { name: 'bob', email: 'bob@example.com' },
      },
      'bob',
    );
    await settle();
    await commitSpec(`${appSpec}\n`);
    await untilEnvironments(['prod', 'edge', 'alpha', 'zeta']);
    assert.deepEqual(await names(), ['dev', 'stage', 'prod', 'qa', 'edge', 'alpha', 'zeta']);

    // The order is valve.yaml's as it is now (on main), not the order environments were made.
    const reordered = appSpec.replace(
      /environments:\n[\s\S]*$/,
      'environments:\n  prod: {}\n  "1": {}\n  dev: {}\n  stage: { replicas: 2 }\n',
    );
    await commitSpec(reordered);
    await untilEnvironments(['1']);
    assert.deepEqual(await names(), ['prod', '1', 'dev', 'stage', 'alpha', 'edge', 'qa', 'zeta']);

    // A broken valve.yaml on main: the last one that reads still orders them.
    await commitSpec(`${reordered}  broken: [\n`);
    assert.deepEqual(await names(), ['prod', '1', 'dev', 'stage', 'alpha', 'edge', 'qa', 'zeta']);
  });

  test('an environment says which team approves changes to it, and the request that waits', async (t) => {
    t.after(stop);
    await deployVersion(1);
    await settle();
    await commitSpec(`${appSpec}\n`);
    await untilEnvironments(['prod']);
    let prod = await deploy.environment('dev', 'hello', 'prod');
    assert.deepEqual(prod.approval, { team: 'ops', timeoutMinutes: 30 });
    assert.equal(prod.pendingApproval, null);
    assert.equal((await deploy.environment('dev', 'hello', 'dev')).approval, null);
    assert.deepEqual(await deploy.approvingTeams('dev', 'hello'), ['ops']);

    const pending = await deploy.promote('dev', 'hello', 'dev', 'prod', alice);
    assert.equal(pending.status, 'pending');
    const approval = pending.status === 'pending' ? pending.approval : undefined!;
    prod = await deploy.environment('dev', 'hello', 'prod');
    assert.equal(prod.pendingApproval?.id, approval.id);
    assert.equal(prod.pendingApproval?.team, 'ops');
    assert.equal(prod.pendingApproval?.kind, 'promote');
    assert.equal((await deploy.environment('dev', 'hello', 'dev')).pendingApproval, null);

    // A request past its time is not pending, even before a poll marks it expired.
    await store.db
      .updateTable('deploy_approvals')
      .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
      .execute();
    assert.equal((await deploy.environment('dev', 'hello', 'prod')).pendingApproval, null);

    // The rule as main has it: without approval the flag goes; a request still waiting keeps
    // its team among the approving ones.
    const again = await deploy.deploy('dev', 'hello', 'prod', 'v1', alice);
    assert.equal(again.status, 'pending');
    await commitSpec(appSpec.replace(/ {2}prod:\n {4}approval: .*\n/, '  prod: {}\n'));
    prod = await deploy.environment('dev', 'hello', 'prod');
    assert.equal(prod.approval, null);
    assert.equal(prod.pendingApproval?.status, 'pending');
    assert.deepEqual(await deploy.approvingTeams('dev', 'hello'), ['ops']);
    assert.deepEqual(await deploy.approvingTeams('dev', 'nope'), []);
    assert.deepEqual(await deploy.approvingTeams('..', 'hello'), []);
  });

  test("an environment with nothing deployed reports no other environment's commits", async (t) => {
    t.after(stop);
    const { commit } = await deployVersion(1);
    await settle();
    // valve.yaml on main names stage: an environment with no folder in the deploy repo.
    await commitSpec(`${appSpec}\n`);
    await untilEnvironments(['stage']);
    const stage = await settle('stage');
    assert.equal(stage.image, null);
    assert.equal(stage.deployCommit, null, `not dev's ${commit}`);
    assert.equal(stage.desiredCommit, null);
    assert.equal(stage.sourceCommit, null);
    assert.equal(stage.deployedAt, null);
    const diff = await deploy.diff('dev', 'hello', 'stage');
    assert.equal(diff.deployCommit, null);
    assert.equal(diff.desiredCommit, null);
    assert.deepEqual((await deploy.history('dev', 'hello', 'stage')).deploys, []);
    const dev = await deploy.environment('dev', 'hello', 'dev');
    assert.equal(dev.deployCommit, commit);
    assert.equal(dev.desiredCommit, commit);

    // A later deploy of dev moves the repo's head; stage still has nothing.
    const second = await deployVersion(2);
    await settle();
    const after = await deploy.environment('dev', 'hello', 'stage');
    assert.equal(after.deployCommit, null, `not dev's ${second.commit}`);
    assert.equal(after.desiredCommit, null);

    // Deployed, it has its own.
    const own = await deployVersion(2, 'stage');
    const deployed = await settle('stage');
    assert.equal(deployed.deployCommit, own.commit);
    assert.equal(deployed.desiredCommit, own.commit);
    assert.equal(deployed.sourceCommit, own.revision);
  });

  test('an environment whose folder is gone keeps what it runs, and desires nothing', async (t) => {
    t.after(stop);
    // qa syncs by hand: its folder removed, it keeps running its version until a sync.
    const { commit } = await deployVersion(1, 'qa');
    await deploy.sync('dev', 'hello', 'qa', alice);
    const paths = await listFilesAt(deployGitDir(), 'refs/heads/main', 'envs/qa');
    await git.commit(
      'dev/hello.deploy.git',
      {
        branch: 'main',
        changes: Object.fromEntries(paths.map((p) => [p, { content: null }])),
        message: 'remove qa',
        author: { name: 'bob', email: 'bob@example.com' },
      },
      'bob',
    );
    const devDeploy = await deployVersion(2);
    await settle();
    const qa = await deploy.environment('dev', 'hello', 'qa');
    assert.equal(qa.syncStatus, 'OutOfSync');
    assert.equal(qa.deployCommit, commit, 'what it runs');
    assert.equal(qa.desiredCommit, null, `not dev's ${devDeploy.commit}`);
    assert.equal((await deploy.diff('dev', 'hello', 'qa')).desiredCommit, null);
  });

  test('a restarted service picks up where it was and applies nothing', async () => {
    await deployVersion(1);
    await deployVersion(2);
    await settle();
    const applied = target.applies.length;
    await deploy.stop();
    deploy = newService();
    await deploy.start();
    try {
      const env = await settle();
      assert.equal(env.syncStatus, 'Synced');
      assert.equal(target.applies.length, applied, 'nothing applied again');
      const third = await deployVersion(3);
      assert.equal((await settle()).digest, third.digest);
    } finally {
      await deploy.stop();
    }
  });

  test('a sync the server stopped in is marked failed and done again', async () => {
    const { commit, digest } = await deployVersion(1);
    await deploy.stop();
    // As a server killed mid-apply leaves it: the sync running, the hash not yet recorded.
    await store.db
      .insertInto('deploy_syncs')
      .values({
        id: 'sync_interrupted',
        app_key: 'dev/hello',
        environment: 'dev',
        commit,
        status: 'running',
        message: 'applying',
        started_at: new Date().toISOString(),
        finished_at: null,
        source_commit: null,
        image: null,
        trigger: 'auto',
        actor: 'valve',
      })
      .execute();
    await store.db
      .updateTable('deploy_environments')
      .set({ applied_hash: null, applied_commit: null })
      .execute();
    target.applies = [];
    deploy = newService();
    await deploy.start();
    try {
      const env = await settle();
      const interrupted = (await deploy.history('dev', 'hello', 'dev')).syncs.find(
        (s) => s.id === 'sync_interrupted',
      );
      assert.equal(interrupted?.status, 'failed');
      assert.match(interrupted!.message!, /server stopped/);
      assert.equal(target.applies.length, 1, 'applied again');
      assert.equal(env.syncStatus, 'Synced');
      assert.equal(env.digest, digest);
    } finally {
      await deploy.stop();
    }
  });
});
