/** openObjectReader (plumbing.ts): many reads through one `git cat-file --batch`. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ValveError } from '../errors.js';
import { commitFiles, initBareRepo, listFilesAt, openObjectReader, runGit } from './plumbing.js';

const dir = mkdtempSync(join(tmpdir(), 'valve-git-reader-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const author = { name: 'alice', email: 'alice@valve' };

test('reads files, folders and missing names in the order asked, through one process', async () => {
  const repo = join(dir, 'a.git');
  await initBareRepo(repo);
  const big = Buffer.alloc(300_000, 'x');
  const commit = await commitFiles(repo, {
    branch: 'main',
    changes: {
      'README.md': { content: 'hello\n' },
      'envs/dev/deployment.yaml': { content: 'kind: Deployment\n' },
      'envs/dev/run me.sh': { content: '#!/bin/sh\n', executable: true },
      'envs/dev/nested/b.yaml': { content: 'b: 1\n' },
      'envs/dev/z.yaml': { content: big },
      'envs/stage/deployment.yaml': { content: 'kind: Deployment\n' },
    },
    message: 'first',
    author,
  });
  const reader = openObjectReader(repo);
  try {
    // Asked all at once: answers still go to the right caller.
    const [readme, missing, folder, noFolder, head, large, spaced] = await Promise.all([
      reader.readFile('refs/heads/main', 'README.md'),
      reader.readFile('refs/heads/main', 'nope.txt'),
      reader.listFiles(commit, 'envs/dev'),
      reader.listFiles(commit, 'envs/prod'),
      reader.read('refs/heads/main'),
      reader.readFile(commit, 'envs/dev/z.yaml'),
      reader.readFile(commit, 'envs/dev/run me.sh'),
    ]);
    assert.equal(readme?.toString(), 'hello\n');
    assert.equal(missing, null);
    assert.equal(await reader.readFile(commit, 'envs/dev'), null, 'a folder is no file');
    assert.deepEqual([...folder.keys()], await listFilesAt(repo, commit, 'envs/dev'));
    assert.equal(folder.get('envs/dev/run me.sh')?.mode, '100755');
    assert.equal(folder.get('envs/dev/deployment.yaml')?.mode, '100644');
    const blob = (await runGit(repo, ['rev-parse', `${commit}:envs/dev/nested/b.yaml`])).stdout;
    assert.equal(folder.get('envs/dev/nested/b.yaml')?.oid, blob.toString().trim());
    assert.equal(noFolder.size, 0);
    assert.deepEqual([head?.oid, head?.type], [commit, 'commit']);
    assert.ok(large?.equals(big));
    assert.equal(spaced?.toString(), '#!/bin/sh\n');
  } finally {
    reader.close();
  }
  await assert.rejects(reader.read('HEAD'), /closed/);
});

test('a repository that is not there fails every read', async () => {
  const reader = openObjectReader(join(dir, 'missing.git'));
  try {
    await assert.rejects(
      reader.readFile('refs/heads/main', 'valve.yaml'),
      (error: unknown) => error instanceof ValveError && error.code === 'GIT_FAILED',
    );
  } finally {
    reader.close();
  }
});
