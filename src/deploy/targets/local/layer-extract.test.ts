import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { entryPath, extractLayer } from './layer-extract.js';
import { buildLayer, type TestLayerEntry } from './test-images.js';

async function apply(root: string, entries: TestLayerEntry[]): Promise<void> {
  const layer = await buildLayer(entries);
  const digest = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
  await extractLayer(root, Readable.from([layer]), { digest, compression: 'gzip' });
}

describe('extractLayer', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'valve-layer-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes files, directories, symlinks and hard links', async () => {
    const root = join(dir, 'plain');
    await apply(root, [
      { name: 'app/', type: 'directory', mode: 0o755 },
      { name: 'app/server.js', content: 'hello' },
      { name: './app/bin/run', content: '#!/bin/sh', mode: 0o755 },
      { name: 'app/current', type: 'symlink', linkname: 'server.js' },
      { name: 'app/copy.js', type: 'link', linkname: 'app/server.js' },
    ]);
    assert.equal(await readFile(join(root, 'app/server.js'), 'utf8'), 'hello');
    assert.equal(await readFile(join(root, 'app/copy.js'), 'utf8'), 'hello');
    assert.equal(await readlink(join(root, 'app/current')), 'server.js');
    assert.equal(await readFile(join(root, 'app/bin/run'), 'utf8'), '#!/bin/sh');
  });

  it('applies whiteouts and opaque directories from an upper layer to lower ones only', async () => {
    const root = join(dir, 'whiteouts');
    await apply(root, [
      { name: 'etc/keep', content: 'lower' },
      { name: 'etc/gone', content: 'lower' },
      { name: 'data/old/a', content: 'lower' },
      { name: 'data/b', content: 'lower' },
    ]);
    await apply(root, [
      { name: 'etc/.wh.gone', content: '' },
      { name: 'data/new', content: 'upper' },
      { name: 'data/.wh..wh..opq', content: '' },
    ]);
    assert.ok(existsSync(join(root, 'etc/keep')));
    assert.ok(!existsSync(join(root, 'etc/gone')));
    assert.ok(!existsSync(join(root, 'etc/.wh.gone')));
    assert.ok(!existsSync(join(root, 'data/old')));
    assert.ok(!existsSync(join(root, 'data/b')));
    assert.equal(await readFile(join(root, 'data/new'), 'utf8'), 'upper');
  });

  it('refuses entries that climb out of the root', async () => {
    const root = join(dir, 'escape');
    await assert.rejects(
      apply(root, [{ name: '../outside', content: 'x' }]),
      /outside the image root/,
    );
    await assert.rejects(
      apply(root, [{ name: 'app/hard', type: 'link', linkname: '../../etc/passwd' }]),
      /outside the image root/,
    );
    assert.ok(!existsSync(join(dir, 'outside')));
  });

  it('resolves symlinked directories inside the root, never on the host', async () => {
    const root = join(dir, 'symlinks');
    const outside = join(dir, 'host-dir');
    await apply(root, [
      { name: 'abs', type: 'symlink', linkname: outside },
      { name: 'rel', type: 'symlink', linkname: '../../../..' + outside },
    ]);
    await apply(root, [
      { name: 'abs/file', content: 'x' },
      { name: 'rel/file2', content: 'y' },
    ]);
    assert.ok(!existsSync(join(outside, 'file')));
    assert.ok(!existsSync(join(outside, 'file2')));
    assert.equal(await readFile(join(root, outside, 'file'), 'utf8'), 'x');
    assert.equal(await readFile(join(root, outside, 'file2'), 'utf8'), 'y');
  });

  it('fails when the layer does not match its digest', async () => {
    const layer = await buildLayer([{ name: 'a', content: 'a' }]);
    const wrong = `sha256:${'0'.repeat(64)}`;
    await assert.rejects(
      extractLayer(join(dir, 'digest'), Readable.from([layer]), {
        digest: wrong,
        compression: 'gzip',
      }),
      /does not match its digest/,
    );
  });

  it('normalizes entry names', () => {
    assert.equal(entryPath('./app/'), 'app');
    assert.equal(entryPath('/app//x'), 'app/x');
    assert.equal(entryPath('./'), null);
    assert.equal(entryPath('a/../b'), 'b');
    assert.throws(() => entryPath('a/../../b'), /outside/);
  });
});
