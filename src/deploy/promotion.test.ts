/**
 * Promotions on real git repositories and a real database, without a reconciler: what a
 * promotion and a rollback write (exactly the rendered or earlier folder, only what differs),
 * and a commit made while `main` moves. The service's view of them (apply, approvals, history
 * through the API's shapes): service.test.ts; with real processes: test/e2e/deploy.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { after, beforeEach, describe, test } from 'node:test';
import { ValveError } from '../errors.js';
import { EventBus } from '../events.js';
import { GitService, logCommits, runGit } from '../git/index.js';
import type { CommitRequest } from '../git/plumbing.js';
import { openStore } from '../store/index.js';
import { parseAppSpec } from './appspec.js';
import { deployMigrations, type DeployTables } from './migrations.js';
import { DeployApprovals } from './deploy-approvals.js';
import { Promotions, type DeployChange } from './promotion.js';
import { renderEnvironment } from './render.js';

const specText = `apiVersion: score.dev/v1b1
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
  stage:
    replicas: 2
    variables: { GREETING: Howdy }
  prod:
    approval: { team: ops, timeoutMinutes: 30 }
`;
const spec = parseAppSpec(specText, 'valve.yaml');
const alice = 'alice';
const image = (n: number) => `registry.test/dev/hello@sha256:${String(n).repeat(64).slice(0, 64)}`;

/** Commits on one repository; `before` runs first, once, inside the first call (a racing writer). */
class RacingGit extends GitService {
  before: (() => Promise<void>) | null = null;

  override async commit(repoPath: string, request: CommitRequest, actor: string) {
    const racer = this.before;
    this.before = null;
    if (racer) await racer();
    return super.commit(repoPath, request, actor);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'valve-promotion-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let run = 0;
let git: RacingGit;
let promotions: Promotions;
let db: Kysely<DeployTables>;
let sourceCommit: string;
const deployGitDir = () => git.pathOf('dev/hello.deploy.git');
const out = async (args: string[]) => (await runGit(deployGitDir(), args)).stdout.toString().trim();

beforeEach(async () => {
  run++;
  const store = await openStore(join(dir, `valve-${run}.db`), [deployMigrations]);
  db = store.db;
  git = new RacingGit(join(dir, `git-${run}`), new EventBus());
  promotions = new Promotions({
    db: store.db,
    git,
    images: { getManifest: async () => null, openBlob: async () => null },
    registryHost: () => 'registry.test',
  });
  await git.createRepo('dev/hello.git');
  sourceCommit = await git.commit(
    'dev/hello.git',
    {
      branch: 'main',
      changes: { 'valve.yaml': { content: specText } },
      message: 'init',
      author: { name: alice, email: 'alice@valve' },
    },
    alice,
  );
  await git.createRepo('dev/hello.deploy.git');
  await byHand('create environments dev, stage, prod', {
    'envs/dev/.keep': { content: '' },
    'envs/stage/.keep': { content: '' },
    'envs/prod/.keep': { content: '' },
  });
});

/** A commit on the deploy repo as a user's push would make it. */
function byHand(message: string, changes: CommitRequest['changes']) {
  return git.commit(
    'dev/hello.deploy.git',
    { branch: 'main', changes, message, author: { name: alice, email: 'alice@valve' } },
    alice,
  );
}

/** What a pipeline's deploy step commits. */
function deployTo(environment: string, n: number) {
  const change: DeployChange = { kind: 'deploy', environment, image: image(n), sourceCommit };
  return promotions.commit('dev', 'hello', change, 'valve', null, spec);
}

/** The files of a folder at a commit, with their content. */
async function folder(commit: string, path: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const name of (await out(['ls-tree', '--name-only', `${commit}:${path}`])).split('\n'))
    if (name) files[name] = await out(['cat-file', 'blob', `${commit}:${path}/${name}`]);
  return files;
}

describe('promotions', () => {
  test('a promotion writes the rendered folder of the target, and only the files that differ', async () => {
    await deployTo('dev', 1);
    const first = await promotions.promote('dev', 'hello', 'dev', 'stage', alice);
    assert.equal(first.status, 'committed');
    const commit = first.status === 'committed' ? first.commit : '';
    const rendered = renderEnvironment({
      spec,
      app: 'hello',
      team: 'dev',
      environment: 'stage',
      image: image(1),
      sourceCommit,
    });
    assert.deepEqual(
      await folder(commit, 'envs/stage'),
      Object.fromEntries(
        [['.keep', ''] as const, ...Object.entries(rendered)].map(([name, text]) => [
          name,
          text.trim(),
        ]),
      ),
    );
    const [head] = await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 });
    assert.equal(head!.sha, commit);
    assert.equal(head!.author, alice);
    assert.match(
      head!.subject,
      /^promote dev -> stage: hello@sha256:111111111111 \(source [0-9a-f]{7}\)$/,
    );
    assert.match(head!.body, new RegExp(`^Image: ${image(1)}$`, 'm'));
    assert.match(head!.body, new RegExp(`^Source-Commit: ${sourceCommit}$`, 'm'));

    // Another digest: only the Deployment names it, so only deployment.yaml is written.
    await deployTo('dev', 2);
    const second = await promotions.promote('dev', 'hello', 'dev', 'stage', alice);
    const secondCommit = second.status === 'committed' ? second.commit : '';
    assert.equal(
      await out(['diff-tree', '--no-commit-id', '--name-only', '-r', secondCommit]),
      'envs/stage/deployment.yaml',
    );
    assert.match(
      await out(['cat-file', 'blob', `${secondCommit}:envs/stage/deployment.yaml`]),
      /sha256:2222222222/,
    );

    // Nothing new: no empty commit, the commit that wrote the folder stands for it.
    const again = await promotions.promote('dev', 'hello', 'dev', 'stage', alice);
    assert.deepEqual(again, { status: 'committed', commit: secondCommit, environment: 'stage' });
  });

  test('a rollback brings back the folder exactly: files added since go, modes come back', async () => {
    await byHand('a script', { 'envs/dev/run.sh': { content: '#!/bin/sh\n', executable: true } });
    const v1 = await deployTo('dev', 1);
    await byHand('by hand: an extra object, no script', {
      'envs/dev/run.sh': { content: null },
      'envs/dev/extra.yaml': {
        content: 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: extra }\n',
      },
    });
    await deployTo('dev', 2);

    // (One step back is the edit by hand: its folder pins v1 too, so history counts it.)
    const result = await promotions.rollback('dev', 'hello', 'dev', { commit: v1 }, alice);
    assert.equal(result.status, 'committed');
    const commit = result.status === 'committed' ? result.commit : '';
    assert.equal(
      await out(['rev-parse', `${commit}:envs/dev`]),
      await out(['rev-parse', `${v1}:envs/dev`]),
    );
    const [head] = await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 });
    assert.equal(
      head!.subject,
      `rollback dev to ${v1.slice(0, 7)} (deploy of hello@sha256:111111111111)`,
    );
    assert.match(head!.body, new RegExp(`^Rolled-Back-To: ${v1}$`, 'm'));
    // Other environments are left as they were.
    assert.equal(
      await out(['rev-parse', `${commit}:envs/stage`]),
      await out(['rev-parse', `${v1}:envs/stage`]),
    );

    const history = await promotions.history('dev', 'hello', 'dev');
    assert.deepEqual(
      history.map((d) => [d.kind, d.digest?.slice(7, 12) ?? null]),
      [
        ['rollback', '11111'],
        ['deploy', '22222'],
        ['edit', '11111'],
        ['deploy', '11111'],
        ['edit', null],
        ['create', null],
      ],
    );
  });

  test('a rollback to something that is not a commit id is refused and commits nothing', async () => {
    await deployTo('dev', 1);
    const head = await out(['rev-parse', 'refs/heads/main']);
    for (const commit of ['HEAD~1', 'abc', 'v1; rm -rf /', 'g'.repeat(40)]) {
      await assert.rejects(
        promotions.rollback('dev', 'hello', 'dev', { commit }, alice),
        (error: unknown) =>
          error instanceof ValveError &&
          error.code === 'INPUT_INVALID' &&
          /commit: expected a commit id \(4-40 hex digits\)/.test(error.message),
        commit,
      );
    }
    assert.equal(await out(['rev-parse', 'refs/heads/main']), head, 'the deploy repo is unchanged');
  });

  test('a change made while main moves is computed again on the new head', async () => {
    await deployTo('dev', 1);
    await deployTo('stage', 2);
    let raced = '';
    git.before = async () => {
      raced = await byHand('by hand: stage notes', { 'envs/stage/NOTES.md': { content: 'hi\n' } });
    };
    const result = await promotions.promote('dev', 'hello', 'dev', 'stage', alice);
    const commit = result.status === 'committed' ? result.commit : '';
    assert.equal(await out(['rev-parse', `${commit}^`]), raced);
    assert.equal(await out(['cat-file', 'blob', `${commit}:envs/stage/NOTES.md`]), 'hi');
    assert.match(
      await out(['cat-file', 'blob', `${commit}:envs/stage/deployment.yaml`]),
      /sha256:1111111111/,
    );
  });

  test('a change into an environment with approval waits; approving commits it', async () => {
    await deployTo('dev', 1);
    const before = await out(['rev-parse', 'refs/heads/main']);
    const pending = await promotions.promote('dev', 'hello', 'dev', 'prod', alice);
    assert.equal(pending.status, 'pending');
    assert.equal(await out(['rev-parse', 'refs/heads/main']), before, 'nothing committed');
    const approval = pending.status === 'pending' ? pending.approval : undefined!;
    const decided = await promotions.decide({
      team: 'dev',
      app: 'hello',
      id: approval.id,
      decision: 'approve',
      username: 'bob',
      isMember: async (team) => team === 'ops',
    });
    assert.equal(decided.status, 'approved');
    const [head] = await logCommits(deployGitDir(), 'refs/heads/main', { limit: 1 });
    assert.equal(head!.sha, decided.commit);
    assert.equal(head!.author, alice);
    assert.match(head!.body, /^Approved-By: bob$/m);
    assert.match(head!.body, new RegExp(`^Approval: ${approval.id}$`, 'm'));
  });

  test('two requests for one environment at once leave one waiting', async () => {
    const rows = new DeployApprovals(db, {
      commit: async () => assert.fail('nothing is approved'),
      findCommit: async () => null,
    });
    const change: DeployChange = {
      kind: 'deploy',
      environment: 'prod',
      image: image(1),
      sourceCommit,
    };
    const policy = { team: 'ops', timeoutMinutes: 30 };
    // Started in the same tick, so their statements interleave unless each is one transaction.
    await Promise.all([
      rows.request('dev', 'hello', change, policy, alice),
      rows.request('dev', 'hello', change, policy, alice),
      rows.request('dev', 'hello', change, policy, alice),
    ]);
    const listed = await rows.list('dev', 'hello');
    assert.deepEqual(listed.map((row) => row.status).sort(), [
      'pending',
      'superseded',
      'superseded',
    ]);
  });

  test('an approval a stopped server left without its commit: found by its trailer, or failed', async () => {
    await deployTo('dev', 1);
    const ask = async () => {
      const result = await promotions.promote('dev', 'hello', 'dev', 'prod', alice);
      assert.equal(result.status, 'pending');
      const approval = result.status === 'pending' ? result.approval : undefined!;
      // What decide() writes before it commits: the server stops right after.
      await db
        .updateTable('deploy_approvals')
        .set({ status: 'approved', decided_by: 'bob', decided_at: new Date().toISOString() })
        .where('id', '=', approval.id)
        .execute();
      return approval;
    };
    // Stopped before the commit: nothing was changed, so the approval failed.
    const lost = await ask();
    const head = await out(['rev-parse', 'refs/heads/main']);
    // Stopped after the commit, before recording it: its trailer finds it.
    const made = await ask();
    const change = JSON.parse(
      (
        await db
          .selectFrom('deploy_approvals')
          .select('request')
          .where('id', '=', made.id)
          .executeTakeFirstOrThrow()
      ).request,
    ) as DeployChange;
    const commit = await promotions.commit('dev', 'hello', change, alice, {
      by: 'bob',
      id: made.id,
    });
    assert.notEqual(commit, head);

    assert.equal(await promotions.recoverApprovals(), 2);
    const lostNow = await promotions.approval('dev', 'hello', lost.id);
    assert.equal(lostNow?.status, 'failed');
    assert.match(lostNow!.comment ?? '', /server stopped before the change was committed/);
    const madeNow = await promotions.approval('dev', 'hello', made.id);
    assert.deepEqual([madeNow?.status, madeNow?.commit], ['approved', commit]);
    assert.equal(await promotions.recoverApprovals(), 0, 'settled once');
  });
});
