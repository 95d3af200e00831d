import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { Registry } from '../registry/index.js';
import { packLayer } from './layer.js';

describe('packLayer', () => {
  let root: string;
  let registry: Registry;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'valve-layer-'));
    registry = new Registry({ dataDir: path.join(root, 'data') });
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const pack = (entries: Parameters<typeof packLayer>[0]) =>
    packLayer(entries, { workingDir: '/app', mtime: new Date(0) }, (data) =>
      registry.putBlob(data),
    );

  async function storedFiles(): Promise<string[]> {
    const entries = await readdir(path.join(root, 'data'), {
      recursive: true,
      withFileTypes: true,
    });
    return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
  }

  test('a file that vanished or changed size fails the layer, naming it, and stores nothing', async () => {
    const changed = path.join(root, 'changed.txt');
    await writeFile(changed, 'now longer than when it was listed');
    await assert.rejects(
      pack([
        {
          path: 'gone.txt',
          type: 'file',
          source: path.join(root, 'gone.txt'),
          size: 5,
          executable: false,
        },
      ]),
      /cannot add gone\.txt to the layer: ENOENT/,
    );
    await assert.rejects(
      pack([{ path: 'changed.txt', type: 'file', source: changed, size: 3, executable: false }]),
      /cannot add changed\.txt to the layer: it changed while being read/,
    );
    assert.deepEqual(await storedFiles(), []);
  });

  test('an empty context still gives a valid layer holding the working directory', async () => {
    const layer = await pack([]);
    assert.match(layer.diffId, /^sha256:[a-f0-9]{64}$/);
    assert.deepEqual(await registry.statBlob(layer.descriptor.digest), {
      size: layer.descriptor.size,
    });
  });
});
