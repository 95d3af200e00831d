import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ValveError } from '../errors.js';
import {
  commitFiles,
  initBareRepo,
  listFilesAt,
  readCommit,
  readBranchHead,
  readFileAt,
  resolveRef,
  runGit,
} from './plumbing.js';

const dir = mkdtempSync(join(tmpdir(), 'valve-git-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const author = { name: 'alice', email: 'alice@valve' };

test('commits files without a work tree and reads them back', async () => {
  const repo = join(dir, 'a.git');
  await initBareRepo(repo);
  assert.equal(await resolveRef(repo, 'refs/heads/main'), null);
  const first = await commitFiles(repo, {
    branch: 'main',
    changes: { 'a.txt': { content: 'A' }, 'bin/run': { content: '#!/bin/sh\n', executable: true } },
    message: 'first',
    author,
  });
  const second = await commitFiles(repo, {
    branch: 'main',
    changes: { 'a.txt': { content: null }, 'dir/b.txt': { content: 'B' } },
    message: 'second\n\nbody',
    author,
  });
  assert.equal(await resolveRef(repo, 'refs/heads/main'), second);
  assert.equal((await readFileAt(repo, first, 'a.txt'))?.toString(), 'A');
  assert.equal(await readFileAt(repo, second, 'a.txt'), null);
  assert.deepEqual(await listFilesAt(repo, second, 'dir'), ['dir/b.txt']);
  const info = await readCommit(repo, second);
  assert.equal(info?.subject, 'second');
  assert.equal(info?.body, 'body');
  assert.deepEqual(info?.parents, [first]);
});

test('a commit built on a stale parent is refused and the branch is unchanged', async () => {
  const repo = join(dir, 'b.git');
  await initBareRepo(repo);
  const base = await commitFiles(repo, {
    branch: 'main',
    changes: { f: { content: '1' } },
    message: 'base',
    author,
  });
  const winner = await commitFiles(repo, {
    branch: 'main',
    changes: { f: { content: '2' } },
    message: 'winner',
    author,
    expectedParent: base,
  });
  await assert.rejects(
    commitFiles(repo, {
      branch: 'main',
      changes: { f: { content: '3' } },
      message: 'loser',
      author,
      expectedParent: base,
    }),
    (error: unknown) => error instanceof ValveError && error.code === 'CONFLICT',
  );
  assert.equal(await resolveRef(repo, 'refs/heads/main'), winner);
});

test('readBranchHead reads loose and packed refs, and a missing branch is null', async () => {
  const repo = join(dir, 'c.git');
  await initBareRepo(repo);
  assert.equal(await readBranchHead(repo, 'main'), null);
  const first = await commitFiles(repo, {
    branch: 'main',
    changes: { f: { content: '1' } },
    message: 'first',
    author,
  });
  assert.equal(await readBranchHead(repo, 'main'), first);
  // `git gc` / `pack-refs` moves the ref into packed-refs and deletes the loose file.
  await runGit(repo, ['pack-refs', '--all', '--prune']);
  assert.equal(await readBranchHead(repo, 'main'), first);
  const second = await commitFiles(repo, {
    branch: 'main',
    changes: { f: { content: '2' } },
    message: 'second',
    author,
  });
  assert.equal(await readBranchHead(repo, 'main'), second);
  assert.equal(await readBranchHead(repo, 'other'), null);
});
