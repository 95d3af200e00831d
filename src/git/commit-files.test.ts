/**
 * commitFiles (plumbing.ts): what a commit written without a work tree holds (modes, folders,
 * bytes, names, idents), the compare-and-swap on the branch, and the git processes it takes.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gitSpawns } from '../../test/support/git-spawns.js';
import { ValveError } from '../errors.js';
import {
  commitFiles,
  initBareRepo,
  listFilesAt,
  readCommit,
  readFileAt,
  resolveRef,
  runGit,
  type CommitRequest,
} from './plumbing.js';

/** The git subcommand of every `git` child this process spawns (the plumbing imports `spawn`). */
const spawned = gitSpawns;

const dir = mkdtempSync(join(tmpdir(), 'valve-git-commit-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const author = { name: 'alice', email: 'alice@valve' };
const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';

let repos = 0;
async function newRepo(): Promise<string> {
  const repo = join(dir, `r${++repos}.git`);
  await initBareRepo(repo);
  return repo;
}

const commit = (repo: string, request: Partial<CommitRequest> & Pick<CommitRequest, 'changes'>) =>
  commitFiles(repo, { branch: 'main', message: 'change', author, ...request });

/** `<mode> <path>` of every file at a revision (`ls-tree -r`). */
async function modes(repo: string, rev: string): Promise<string[]> {
  const out = (await runGit(repo, ['ls-tree', '-r', '-z', rev])).stdout.toString();
  return out
    .split('\0')
    .filter(Boolean)
    .map((entry) => `${entry.split(' ')[0]} ${entry.split('\t')[1]}`);
}

const treeOf = async (repo: string, rev: string) =>
  (await runGit(repo, ['rev-parse', `${rev}^{tree}`])).stdout.toString().trim();

const isCode = (code: string) => (error: unknown) =>
  error instanceof ValveError && error.code === code;

test('a commit takes two git processes, whatever it changes; no scratch ref or pack is left', async () => {
  const repo = await newRepo();
  spawned.length = 0;
  const first = await commit(repo, {
    changes: {
      'README.md': { content: 'hello\n' },
      'deploy/dev/deployment.yaml': { content: 'kind: Deployment\n' },
      'deploy/dev/service.yaml': { content: 'kind: Service\n' },
      'deploy/stage/.keep': { content: '' },
    },
  });
  // No ref file yet: rev-parse makes sure the branch is not a packed ref either.
  assert.deepEqual(spawned, ['rev-parse', 'fast-import', 'update-ref']);
  spawned.length = 0;
  const second = await commit(repo, {
    changes: {
      'deploy/dev/deployment.yaml': { content: 'kind: Deployment\nspec: {}\n' },
      'deploy/dev/service.yaml': { content: null },
      'deploy/stage/deployment.yaml': { content: 'kind: Deployment\n' },
      'deploy/stage/service.yaml': { content: 'kind: Service\n' },
    },
  });
  // The tip is read from the branch's ref file.
  assert.deepEqual(spawned, ['fast-import', 'update-ref']);
  spawned.length = 0;
  await commit(repo, {
    changes: { 'deploy/dev/deployment.yaml': { content: 'kind: Deployment\n' } },
    expectedParent: second,
  });
  assert.deepEqual(spawned, ['fast-import', 'update-ref']);
  assert.deepEqual((await readCommit(repo, second))?.parents, [first]);
  const refs = (await runGit(repo, ['for-each-ref', '--format=%(refname)'])).stdout.toString();
  assert.equal(refs, 'refs/heads/main\n');
  // Objects this few are written loose, as hash-object and commit-tree wrote them.
  assert.deepEqual(
    readdirSync(join(repo, 'objects', 'pack')).filter((f) => f.endsWith('.pack')),
    [],
  );
});

test('executable bits are written and cleared', async () => {
  const repo = await newRepo();
  const first = await commit(repo, {
    changes: {
      'bin/run': { content: '#!/bin/sh\n', executable: true },
      'bin/lib.sh': { content: 'x=1\n' },
    },
  });
  assert.deepEqual(await modes(repo, first), ['100644 bin/lib.sh', '100755 bin/run']);
  const second = await commit(repo, {
    changes: {
      'bin/run': { content: '#!/bin/sh\necho\n' },
      'bin/lib.sh': { content: 'x=1\n', executable: true },
    },
  });
  assert.deepEqual(await modes(repo, second), ['100755 bin/lib.sh', '100644 bin/run']);
});

test('deleting the last file of a nested folder prunes the folders left empty', async () => {
  const repo = await newRepo();
  await commit(repo, {
    changes: {
      'a/b/c/deep.txt': { content: 'deep' },
      'a/side.txt': { content: 'side' },
      'top.txt': { content: 'top' },
    },
  });
  const second = await commit(repo, { changes: { 'a/b/c/deep.txt': { content: null } } });
  assert.deepEqual(await modes(repo, second), ['100644 a/side.txt', '100644 top.txt']);
  const trees = (await runGit(repo, ['ls-tree', '-r', '-d', '--name-only', second])).stdout;
  assert.equal(trees.toString(), 'a\n');
  // A path that is not there is no error; deleting everything leaves the empty tree.
  const third = await commit(repo, {
    changes: {
      'a/side.txt': { content: null },
      'top.txt': { content: null },
      'never/was.txt': { content: null },
    },
  });
  assert.equal(await treeOf(repo, third), EMPTY_TREE);
  assert.deepEqual((await readCommit(repo, third))?.parents, [second]);
});

test('deleting a folder path deletes what is under it', async () => {
  const repo = await newRepo();
  await commit(repo, {
    changes: { 'env/dev/a.yaml': { content: 'a' }, 'env/dev/b/c.yaml': { content: 'c' } },
  });
  await commit(repo, { changes: { 'env/stage/a.yaml': { content: 'a' } } });
  const tip = await commit(repo, { changes: { 'env/dev': { content: null } } });
  assert.deepEqual(await modes(repo, tip), ['100644 env/stage/a.yaml']);
});

test('replaceAll keeps only the files named, on top of the parent', async () => {
  const repo = await newRepo();
  const first = await commit(repo, {
    changes: { 'old/a.txt': { content: 'a' }, 'keep.txt': { content: 'k' } },
  });
  const second = await commit(repo, {
    changes: { 'keep.txt': { content: 'k2' }, 'new/b.txt': { content: 'b' } },
    replaceAll: true,
  });
  assert.deepEqual(await modes(repo, second), ['100644 keep.txt', '100644 new/b.txt']);
  assert.deepEqual((await readCommit(repo, second))?.parents, [first]);
  // No changes at all: a commit with the parent's tree.
  const third = await commit(repo, { changes: {} });
  assert.equal(await treeOf(repo, third), await treeOf(repo, second));
});

test('binary content and paths with spaces, unicode, quotes, backslashes and newlines', async () => {
  const repo = await newRepo();
  const binary = Buffer.from([0, 1, 2, 0xff, 0, 10, 13, 0, 0x80]);
  const paths = [
    'dir with spaces/ünïcödé 文件.bin',
    '"quoted" name',
    'back\\slash/tab\there',
    'new\nline/x',
    'emoji 🚀.txt',
  ];
  const tip = await commit(repo, {
    changes: Object.fromEntries(paths.map((path, i) => [path, { content: i ? `${i}` : binary }])),
  });
  assert.deepEqual(await readFileAt(repo, tip, paths[0]!), binary);
  for (const [i, path] of paths.entries()) {
    if (i) assert.equal((await readFileAt(repo, tip, path))?.toString(), `${i}`, path);
  }
  assert.deepEqual((await listFilesAt(repo, tip, '.')).sort(), [...paths].sort());
  const removed = await commit(repo, { changes: { [paths[0]!]: { content: null } } });
  assert.deepEqual((await listFilesAt(repo, removed, '.')).sort(), paths.slice(1).sort());
});

test('paths git would not put in a tree are refused before anything is written', async () => {
  const repo = await newRepo();
  const base = await commit(repo, { changes: { 'a.txt': { content: 'a' } } });
  for (const path of [
    '',
    '/abs',
    'dir/',
    'a//b',
    './a',
    'a/../b',
    '..',
    '.git/config',
    'x/.GIT/hooks/pre-receive',
    'x/git~1/y',
    '.git. /y',
    'nul\0byte',
  ]) {
    for (const content of ['x', null]) {
      await assert.rejects(
        commit(repo, { changes: { 'ok.txt': { content: 'ok' }, [path]: { content } } }),
        isCode('INPUT_INVALID'),
        JSON.stringify(path),
      );
    }
  }
  assert.equal(await resolveRef(repo, 'refs/heads/main'), base);
  // Names that only look alike are files like any other.
  const tip = await commit(repo, {
    changes: {
      '.github/x': { content: 'g' },
      '.gitignore': { content: 'i' },
      '...': { content: 'd' },
    },
  });
  assert.deepEqual(await modes(repo, tip), [
    '100644 ...',
    '100644 .github/x',
    '100644 .gitignore',
    '100644 a.txt',
  ]);
});

test('author, committer, dates and message are written as commit-tree wrote them', async () => {
  const repo = await newRepo();
  const before = Math.floor(Date.now() / 1000);
  const message = 'deploy dev: hello\n\nbody — ünïcode\n  indented\n\n';
  const sha = await commitFiles(repo, {
    branch: 'main',
    changes: { f: { content: '1' } },
    message,
    author: { name: ' "Ali<ce>"; ', email: '<alice@valve>' },
  });
  const after = Math.floor(Date.now() / 1000);
  const raw = (await runGit(repo, ['cat-file', 'commit', sha])).stdout.toString();
  const [headers = '', body] = [
    raw.slice(0, raw.indexOf('\n\n')),
    raw.slice(raw.indexOf('\n\n') + 2),
  ];
  // The message byte for byte: no newline added, none stripped.
  assert.equal(body, message);
  const lines = headers.split('\n');
  assert.match(lines[0]!, /^tree [0-9a-f]{40}$/);
  assert.equal(lines.length, 3, 'no parent on a new branch');
  const ident = /^(author|committer) (.*) (\d+) ([+-]\d{4})$/;
  const [, , who, when] = ident.exec(lines[1]!)!;
  assert.equal(who, 'Alice <alice@valve>');
  assert.ok(Number(when) >= before && Number(when) <= after, `author date ${when}`);
  const [, , committer, committed] = ident.exec(lines[2]!)!;
  assert.equal(committer, 'Valve <valve@localhost>');
  assert.ok(Number(committed) >= before && Number(committed) <= after);
  // A name with nothing but "crud" is refused, as commit-tree refused it.
  await assert.rejects(
    commitFiles(repo, {
      branch: 'main',
      changes: { f: { content: '2' } },
      message: 'm',
      author: { name: ' <.> ', email: 'x@y' },
    }),
    isCode('INPUT_INVALID'),
  );
  assert.equal(await resolveRef(repo, 'refs/heads/main'), sha);
});

test('an unborn branch: a root commit, and null as the parent means it must not exist', async () => {
  const repo = await newRepo();
  const root = await commit(repo, { changes: { f: { content: '1' } }, expectedParent: null });
  assert.deepEqual((await readCommit(repo, root))?.parents, []);
  await assert.rejects(
    commit(repo, { changes: { f: { content: '2' } }, expectedParent: null }),
    isCode('CONFLICT'),
  );
  assert.equal(await resolveRef(repo, 'refs/heads/main'), root);
  // Another branch of the same repository starts from nothing, not from main.
  const other = await commit(repo, { branch: 'other', changes: { g: { content: 'g' } } });
  assert.deepEqual((await readCommit(repo, other))?.parents, []);
  assert.deepEqual(await modes(repo, other), ['100644 g']);
  assert.equal(await resolveRef(repo, 'refs/heads/main'), root);
});

test('two writers on the same head: exactly one wins, the other gets CONFLICT and loses nothing on retry', async () => {
  const repo = await newRepo();
  let head = await commit(repo, { changes: { 'shared.txt': { content: '0' } } });
  for (let round = 1; round <= 5; round++) {
    const write = (writer: string) =>
      commit(repo, {
        changes: { [`${writer}.txt`]: { content: `${writer} ${round}` } },
        message: `${writer} ${round}`,
        expectedParent: head,
      });
    const results = await Promise.allSettled([write('left'), write('right')]);
    const won = results.flatMap((r, i) =>
      r.status === 'fulfilled' ? [[i, r.value] as const] : [],
    );
    assert.equal(won.length, 1, `round ${round}: one winner`);
    const [winner, sha] = won[0]!;
    const lost = results[1 - winner]!;
    assert.equal(lost.status, 'rejected');
    assert.ok(isCode('CONFLICT')((lost as PromiseRejectedResult).reason));
    assert.equal(await resolveRef(repo, 'refs/heads/main'), sha);
    assert.deepEqual((await readCommit(repo, sha))?.parents, [head]);
    // The loser computes again on the new head, as callers do.
    const retried = await write(winner ? 'left' : 'right').catch(() => null);
    assert.equal(retried, null, 'the stale parent is still refused');
    head = sha;
    head = await write(winner ? 'left' : 'right');
    for (const name of ['left', 'right'])
      assert.equal((await readFileAt(repo, head, `${name}.txt`))?.toString(), `${name} ${round}`);
  }
  // Writers that take the tip themselves race the same way.
  const results = await Promise.allSettled(
    ['a', 'b', 'c'].map((w) => commit(repo, { changes: { [w]: { content: w } } })),
  );
  const winners = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  assert.ok(winners.length >= 1);
  for (const r of results)
    if (r.status === 'rejected') assert.ok(isCode('CONFLICT')(r.reason), String(r.reason));
  const history = (await runGit(repo, ['rev-list', 'main'])).stdout.toString().split('\n');
  for (const sha of winners) assert.ok(history.includes(sha), `${sha} is on main`);
});

test('a branch moved back meanwhile is a conflict too, not only one moved ahead', async () => {
  // fast-import's own ref update would accept this (the new commit contains the old tip);
  // the compare-and-swap refuses it.
  const repo = await newRepo();
  const first = await commit(repo, { changes: { f: { content: '1' } } });
  const second = await commit(repo, { changes: { f: { content: '2' } } });
  await runGit(repo, ['update-ref', 'refs/heads/main', first, second]);
  await assert.rejects(
    commit(repo, { changes: { f: { content: '3' } }, expectedParent: second }),
    isCode('CONFLICT'),
  );
  assert.equal(await resolveRef(repo, 'refs/heads/main'), first);
  // A branch deleted meanwhile as well.
  await runGit(repo, ['update-ref', '-d', 'refs/heads/main', first]);
  await assert.rejects(
    commit(repo, { changes: { f: { content: '4' } }, expectedParent: first }),
    isCode('CONFLICT'),
  );
  assert.equal(await resolveRef(repo, 'refs/heads/main'), null);
});

test('a parent that is no commit fails with GIT_FAILED and leaves no crash report; nor one that is no word', async () => {
  const repo = await newRepo();
  const base = await commit(repo, { changes: { f: { content: '1' } } });
  await assert.rejects(
    commit(repo, { changes: { f: { content: '2' } }, expectedParent: 'f'.repeat(40) }),
    isCode('GIT_FAILED'),
  );
  // A parent is one word: nothing of it reaches fast-import as a command of its own.
  await assert.rejects(
    commit(repo, { changes: { f: { content: '3' } }, expectedParent: `${base}\nD f` }),
    isCode('INPUT_INVALID'),
  );
  assert.equal(await resolveRef(repo, 'refs/heads/main'), base);
  assert.deepEqual(
    readdirSync(repo).filter((name) => name.startsWith('fast_import_crash')),
    [],
  );
  assert.ok(!existsSync(join(repo, 'refs', 'valve')));
});
