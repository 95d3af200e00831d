/**
 * The desired-state cache against real git: a folder whose tree id did not change keeps its
 * parsed state (the same object), and every environment's commit is the one
 * `git log -1 -- envs/<env>` names, whatever happened since the head read before: commits to
 * other folders, a change put back, a merge, a head that is not a descendant, a long way back.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EventBus } from '../events.js';
import { GitService, readBranchHead, runGit } from '../git/index.js';
import { DesiredStateCache } from './desired-state-cache.js';

const ENVIRONMENTS = ['dev', 'stage', 'prod'];
const REPO = 'dev/hello.deploy.git';
const APP = 'dev/hello';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'valve-desired-cache-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let run = 0;
async function repo() {
  run++;
  const git = new GitService(join(dir, `git-${run}`), new EventBus());
  await git.createRepo(REPO);
  const gitDir = git.pathOf(REPO);
  const commit = (changes: Record<string, string | null>, message = 'change') =>
    git.commit(
      REPO,
      {
        branch: 'main',
        changes: Object.fromEntries(
          Object.entries(changes).map(([path, content]) => [path, { content }]),
        ),
        message,
        author: { name: 'alice', email: 'alice@valve' },
      },
      'alice',
    );
  await commit(Object.fromEntries(ENVIRONMENTS.map((env) => [`envs/${env}/.keep`, ''])), 'init');
  const head = async () => (await readBranchHead(gitDir, 'main'))!;
  /** Checks every environment's commit against git's at the current head; returns the reads. */
  const check = async (cache: DesiredStateCache) => {
    const at = await head();
    const reads = new Map<string, Awaited<ReturnType<DesiredStateCache['read']>>>();
    for (const env of ENVIRONMENTS) {
      const read = await cache.read(gitDir, APP, env, at);
      const [sha = '', subject = ''] = (
        await runGit(gitDir, ['log', '-1', '--format=%H%x1f%s', at, '--', `envs/${env}`])
      ).stdout
        .toString()
        .trim()
        .split('\x1f');
      assert.equal(read.revision?.sha, sha, `${env}: the commit git log names`);
      assert.equal(read.revision?.subject, subject);
      reads.set(env, read);
    }
    return reads;
  };
  return { gitDir, commit, head, check };
}

/** A ConfigMap manifest: a folder's desired state with one resource. */
const configMap = (value: string) =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: "${value}"\n`;

test('a commit to one folder re-reads that folder; the others keep their parsed state', async () => {
  const { gitDir, commit, check } = await repo();
  await commit({ 'envs/dev/settings.yaml': configMap('1') }, 'deploy dev');
  await commit({ 'envs/prod/settings.yaml': configMap('1') }, 'deploy prod');
  const cache = new DesiredStateCache();
  const first = await check(cache);
  assert.deepEqual(await cache.entries(gitDir, APP, (await readBranchHead(gitDir, 'main'))!), [
    'dev',
    'prod',
    'stage',
  ]);
  assert.equal(first.get('dev')!.desired!.resources.length, 1);
  assert.equal(first.get('stage')!.folder, true);

  await commit({ 'envs/dev/settings.yaml': configMap('2') }, 'deploy dev again');
  const second = await check(cache);
  assert.notEqual(second.get('dev'), first.get('dev'));
  assert.deepEqual(second.get('dev')!.desired!.resources[0]!.object, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'settings' },
    data: { value: '2' },
  });
  for (const env of ['stage', 'prod']) {
    assert.equal(second.get(env), first.get(env), `${env}: the same read`);
    assert.equal(second.get(env)!.desired, first.get(env)!.desired, `${env}: the same parse`);
  }
});

test('a change put back before the next read: same tree id, the later commit', async () => {
  const { commit, check } = await repo();
  const cache = new DesiredStateCache();
  const first = await check(cache);
  await commit({ 'envs/stage/settings.yaml': configMap('1') }, 'deploy stage');
  await commit({ 'envs/stage/settings.yaml': null }, 'rollback stage');
  await commit({ 'envs/dev/settings.yaml': configMap('1') }, 'deploy dev');
  const second = await check(cache);
  assert.equal(second.get('stage')!.revision!.subject, 'rollback stage');
  assert.equal(second.get('stage')!.desired, first.get('stage')!.desired, 'parsed once');
  assert.equal(second.get('prod'), first.get('prod'));
});

test('a merge, a head that is not a descendant and a long history: git log is asked', async () => {
  const { gitDir, commit, head, check } = await repo();
  const cache = new DesiredStateCache();
  await check(cache);

  // A merge of a side line that changed stage with main that changed dev.
  const base = await head();
  await commit({ 'envs/dev/settings.yaml': configMap('1') }, 'deploy dev');
  const main = await head();
  await runGit(gitDir, ['update-ref', 'refs/heads/main', base]);
  await commit({ 'envs/stage/settings.yaml': configMap('1') }, 'deploy stage');
  const side = await head();
  const tree = (await runGit(gitDir, ['rev-parse', `${side}^{tree}`])).stdout.toString().trim();
  const bob = { name: 'bob', email: 'bob@valve' };
  const merged = (
    await runGit(gitDir, ['commit-tree', tree, '-p', main, '-p', side], {
      input: 'merge',
      env: {
        GIT_AUTHOR_NAME: bob.name,
        GIT_AUTHOR_EMAIL: bob.email,
        GIT_COMMITTER_NAME: bob.name,
        GIT_COMMITTER_EMAIL: bob.email,
      },
    })
  ).stdout
    .toString()
    .trim();
  await runGit(gitDir, ['update-ref', 'refs/heads/main', merged]);
  await check(cache);

  // Main reset to an older commit and a new line built on it.
  await runGit(gitDir, ['update-ref', 'refs/heads/main', base]);
  await commit({ 'envs/prod/settings.yaml': configMap('1') }, 'deploy prod');
  await check(cache);

  // More commits than the walk follows (64), to one folder: the others' commits come from git.
  await commit({ 'envs/dev/settings.yaml': configMap('a') }, 'deploy dev a');
  const a = await head();
  await commit({ 'envs/dev/settings.yaml': configMap('b') }, 'deploy dev b');
  const trees = await Promise.all(
    [a, await head()].map(async (c) =>
      (await runGit(gitDir, ['rev-parse', `${c}^{tree}`])).stdout.toString().trim(),
    ),
  );
  let tip = await head();
  for (let i = 0; i < 70; i++) {
    tip = (
      await runGit(gitDir, ['commit-tree', trees[i % 2]!, '-p', tip], {
        input: `deploy dev ${i}`,
        env: {
          GIT_AUTHOR_NAME: bob.name,
          GIT_AUTHOR_EMAIL: bob.email,
          GIT_COMMITTER_NAME: bob.name,
          GIT_COMMITTER_EMAIL: bob.email,
        },
      })
    ).stdout
      .toString()
      .trim();
  }
  await runGit(gitDir, ['update-ref', 'refs/heads/main', tip]);
  await check(cache);
  // And read from nothing (a new server): the same commits.
  await check(new DesiredStateCache());
});

test('an unreadable manifest: the error names the file and the commit that broke it', async () => {
  const { gitDir, commit, head, check } = await repo();
  const cache = new DesiredStateCache();
  await check(cache);
  await commit(
    { 'envs/dev/secret.yaml': 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n' },
    'hand edit',
  );
  const broken = await head();
  await commit({ 'envs/prod/settings.yaml': configMap('1') }, 'deploy prod');
  const reads = await check(cache);
  const dev = reads.get('dev')!;
  assert.equal(dev.desired, null);
  assert.equal(dev.error?.key, `manifest:${broken}`);
  assert.match(dev.error!.message, /^deploy repo: envs\/dev\/secret\.yaml:2:7: kind: /);

  // No branch: no folder.
  assert.deepEqual(await cache.read(gitDir, APP, 'dev', null), {
    folder: false,
    revision: null,
    desired: null,
    hash: null,
    error: null,
  });
});
