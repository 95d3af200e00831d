import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import {
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { extractArchive, writeArchive } from './archive.js';
import { commonAncestor, selectFiles } from './workspace-files.js';

let root: string;
let workspace: string;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'valve-archive-'));
  workspace = path.join(root, 'ws');
  await mkdir(path.join(workspace, 'dist/js'), { recursive: true });
  await mkdir(path.join(workspace, 'node_modules/.bin'), { recursive: true });
  await mkdir(path.join(workspace, 'node_modules/tool'), { recursive: true });
  await mkdir(path.join(root, 'outside'), { recursive: true });
  await writeFile(path.join(root, 'outside/secret'), 'secret');
  await writeFile(path.join(workspace, 'dist/index.html'), '<h1>hi</h1>');
  await writeFile(path.join(workspace, 'dist/js/app.js'), 'console.log(1)');
  await writeFile(path.join(workspace, 'dist/js/app.js.map'), '{}');
  await writeFile(path.join(workspace, 'dist/.env'), 'TOKEN=x');
  await writeFile(path.join(workspace, 'node_modules/tool/cli.js'), '#!/usr/bin/env node', {
    mode: 0o755,
  });
  await symlink('../tool/cli.js', path.join(workspace, 'node_modules/.bin/tool'));
  await symlink(path.join(root, 'outside'), path.join(workspace, 'escape'));
});
after(() => rm(root, { recursive: true, force: true }));

describe('selectFiles', () => {
  test('a directory brings everything below it; hidden names only with dot', async () => {
    const hidden = await selectFiles(workspace, ['dist'], { dot: false, what: 'path' });
    assert.deepEqual(
      hidden.entries.map((entry) => entry.path),
      ['dist/index.html', 'dist/js/app.js', 'dist/js/app.js.map'],
    );
    assert.deepEqual(hidden.searchBases, ['dist']);
    const all = await selectFiles(workspace, ['dist/'], { dot: true, what: 'path' });
    assert.ok(all.entries.some((entry) => entry.path === 'dist/.env'));
  });

  test('globs, exclusions and search bases', async () => {
    const { entries, searchBases } = await selectFiles(workspace, ['dist/**/*.js*', '!**/*.map'], {
      dot: false,
      what: 'path',
    });
    assert.deepEqual(
      entries.map((entry) => entry.path),
      ['dist/js/app.js'],
    );
    assert.deepEqual(searchBases, ['dist']);
    assert.equal(commonAncestor(['dist/js', 'dist', 'dist/css']), 'dist');
    assert.equal(commonAncestor(['a/b', 'c']), '');
  });

  test('symlinks are selected as links, never followed', async () => {
    const { entries } = await selectFiles(workspace, ['node_modules'], {
      dot: true,
      what: 'path',
    });
    const link = entries.find((entry) => entry.path === 'node_modules/.bin/tool');
    assert.equal(link?.type, 'symlink');
    assert.equal(link?.linkname, '../tool/cli.js');
    const escape = await selectFiles(workspace, ['escape'], { dot: true, what: 'path' });
    assert.deepEqual(
      escape.entries.map((entry) => [entry.path, entry.type]),
      [['escape', 'symlink']],
    );
  });

  test('patterns leaving the workspace, or reaching through a symlink out of it, are refused', async () => {
    await assert.rejects(
      selectFiles(workspace, ['../outside'], { dot: true, what: 'with.path' }),
      /with.path: "..\/outside" is outside the workspace/,
    );
    await assert.rejects(
      selectFiles(workspace, [path.join(root, 'outside/secret')], { dot: true, what: 'p' }),
      /is outside the workspace/,
    );
    await assert.rejects(
      selectFiles(workspace, ['escape/secret'], { dot: true, what: 'p' }),
      /through a symlink leading outside the workspace/,
    );
  });
});

describe('archives', () => {
  test('round trip: files with content, modes and digests, symlinks as links', async () => {
    const { entries } = await selectFiles(workspace, ['dist', 'node_modules'], {
      dot: true,
      what: 'path',
    });
    const file = path.join(root, 'round.tar.gz');
    const written = await writeArchive(entries, file, { root: '', level: 6 });
    assert.match(written.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(written.size, (await readFile(file)).length);
    const app = written.files.find((entry) => entry.path === 'dist/js/app.js');
    assert.equal(app?.size, 'console.log(1)'.length);
    assert.deepEqual(written.links, [{ path: 'node_modules/.bin/tool', target: '../tool/cli.js' }]);

    const dest = path.join(root, 'round-out');
    const paths = await extractArchive(file, dest);
    assert.equal(paths.length, entries.length);
    assert.equal(await readFile(path.join(dest, 'dist/js/app.js'), 'utf8'), 'console.log(1)');
    assert.equal(await readlink(path.join(dest, 'node_modules/.bin/tool')), '../tool/cli.js');
    assert.equal((await lstat(path.join(dest, 'node_modules/tool/cli.js'))).mode & 0o777, 0o755);
    assert.equal((await lstat(path.join(dest, 'dist/index.html'))).mode & 0o777, 0o644);
  });

  test('the same tree gives the same archive', async () => {
    const { entries } = await selectFiles(workspace, ['dist'], { dot: true, what: 'path' });
    const first = await writeArchive(entries, path.join(root, 'same-1.tar.gz'), {
      root: 'dist',
      level: 6,
    });
    const second = await writeArchive(entries, path.join(root, 'same-2.tar.gz'), {
      root: 'dist',
      level: 6,
    });
    assert.equal(first.digest, second.digest);
    assert.ok(first.files.every((entry) => !entry.path.startsWith('dist/')));
  });

  test('entries escaping the destination are refused, nothing is written outside', async () => {
    const cases: { name: string; entries: tar.Header[] | Partial<tar.Header>[] }[] = [
      { name: 'dot-dot', entries: [{ name: '../evil', type: 'file' }] },
      { name: 'absolute', entries: [{ name: '/tmp/evil', type: 'file' }] },
      {
        name: 'through a symlink',
        entries: [
          { name: 'link', type: 'symlink', linkname: path.join(root, 'outside') },
          { name: 'link/evil', type: 'file' },
        ],
      },
      { name: 'hard link', entries: [{ name: 'hard', type: 'link', linkname: '/etc/passwd' }] },
    ];
    for (const { name, entries } of cases) {
      const file = path.join(root, `evil-${name.replace(/\W/g, '')}.tar.gz`);
      await craftArchive(file, entries as (Partial<tar.Header> & { name: string })[]);
      await assert.rejects(
        extractArchive(file, path.join(root, `evil-out-${name.replace(/\W/g, '')}`)),
        /outside the destination|through the symlink|not supported/,
        name,
      );
    }
    await assert.rejects(lstat(path.join(root, 'evil')), { code: 'ENOENT' });
    await assert.rejects(lstat(path.join(root, 'outside/evil')), { code: 'ENOENT' });
  });

  test('restoring replaces a symlink at the path instead of writing through it', async () => {
    const dest = path.join(root, 'replace-out');
    await mkdir(dest, { recursive: true });
    await symlink(path.join(root, 'outside/secret'), path.join(dest, 'target'));
    const file = path.join(root, 'replace.tar.gz');
    await craftArchive(file, [{ name: 'target', type: 'file' }], 'new content');
    await extractArchive(file, dest);
    assert.equal(await readFile(path.join(dest, 'target'), 'utf8'), 'new content');
    assert.equal(await readFile(path.join(root, 'outside/secret'), 'utf8'), 'secret');
  });

  test('a file that does not match its recorded digest is refused', async () => {
    const file = path.join(root, 'digest.tar.gz');
    await craftArchive(file, [{ name: 'a.txt', type: 'file' }], 'tampered');
    await assert.rejects(
      extractArchive(file, path.join(root, 'digest-out'), {
        expect: new Map([['a.txt', { size: 8, sha256: '0'.repeat(64) }]]),
      }),
      /a.txt does not match its recorded size and sha256/,
    );
    await assert.rejects(
      extractArchive(file, path.join(root, 'digest-out-2'), { expect: new Map() }),
      /not in the artifact's file list/,
    );
    // Artifacts hold regular files only: a symlink in one is refused.
    const linked = path.join(root, 'linked.tar.gz');
    await craftArchive(linked, [{ name: 'link', type: 'symlink', linkname: 'a.txt' }]);
    await assert.rejects(
      extractArchive(linked, path.join(root, 'linked-out'), { expect: new Map() }),
      /archive entry link is a symlink, not a listed file/,
    );
  });
});

/** A gzip tar with hand-made headers: what a hostile archive could contain. */
async function craftArchive(
  file: string,
  entries: (Partial<tar.Header> & { name: string })[],
  content = 'x',
): Promise<void> {
  const pack = tar.pack();
  const writing = pipeline(pack, createGzip(), createWriteStream(file));
  for (const entry of entries) {
    const body = entry.type === 'file' ? content : '';
    await new Promise<void>((resolve, reject) =>
      pack.entry({ mode: 0o644, ...entry }, body, (error) => (error ? reject(error) : resolve())),
    );
  }
  pack.finalize();
  await writing;
}
