import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { describeBlobStorageContract, sha256 } from './driver.case.test.js';
import { FilesystemStorage } from './filesystem.js';

async function filesUnder(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true, withFileTypes: true }))
      .filter((entry) => entry.isFile())
      .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
      .sort();
  } catch {
    return [];
  }
}

describeBlobStorageContract('filesystem', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'valve-fs-storage-'));
  return {
    storage: new FilesystemStorage(root),
    everything: () => filesUnder(root),
    largeSize: 6 * 1024 * 1024 + 17,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

describe('filesystem blob storage', () => {
  it('keeps the layout blobs/sha256/<2 hex>/<hex>, so existing data keeps working', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'valve-fs-storage-'));
    try {
      const storage = new FilesystemStorage(root);
      const data = Buffer.from('layout');
      await storage.put(data);
      const hex = sha256(data).slice('sha256:'.length);
      assert.deepEqual(await filesUnder(root), [
        path.join('blobs', 'sha256', hex.slice(0, 2), hex),
      ]);
      assert.equal((await stat(path.join(root, 'blobs', 'sha256', hex.slice(0, 2), hex))).size, 6);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
