import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Registry } from '../registry/index.js';
import { buildImage } from './index.js';
import { loadOciLayout, writeOciLayout } from './oci-layout.js';

describe('OCI image layouts', () => {
  let root: string;
  let source: Registry;
  let digest: string;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'valve-oci-layout-'));
    const context = path.join(root, 'context');
    await mkdir(context);
    await writeFile(path.join(context, 'app.js'), 'console.log(1);\n');
    source = new Registry({ dataDir: path.join(root, 'source') });
    ({ digest } = await buildImage({
      contextDir: context,
      registry: source,
      repo: 'team-a/app',
      tag: 'v1',
    }));
  });
  after(() => rm(root, { recursive: true, force: true }));

  async function exported(name: string): Promise<string> {
    const dir = path.join(root, name);
    const stored = (await source.getManifest('team-a/app', 'v1'))!;
    await writeOciLayout({ dir, registry: source, manifest: stored, refName: 'v1' });
    return dir;
  }

  test('an image written to a layout loads back with the same digest', async () => {
    const dir = await exported('round-trip');
    const target = new Registry({ dataDir: path.join(root, 'target') });
    const loaded = await loadOciLayout({
      dir,
      registry: target,
      repo: 'team-b/copy',
      tag: 'x',
      refName: 'v1',
    });
    assert.equal(loaded.digest, digest);
    assert.equal(loaded.layers, 1);
    assert.equal((await target.getManifest('team-b/copy', 'x'))?.digest, digest);
    await assert.rejects(
      loadOciLayout({ dir, registry: target, repo: 'team-b/copy', tag: 'x', refName: 'v2' }),
      /has 0 images named v2; expected exactly one/,
    );
  });

  test('a blob whose bytes were changed is refused and nothing is tagged', async () => {
    const dir = await exported('tampered');
    const manifest = JSON.parse(
      (await readFile(path.join(dir, 'blobs/sha256', digest.slice(7)))).toString('utf8'),
    );
    const layer = path.join(dir, 'blobs/sha256', manifest.layers[0].digest.slice(7));
    const bytes = await readFile(layer);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
    await writeFile(layer, bytes);
    const target = new Registry({ dataDir: path.join(root, 'target-tampered') });
    await assert.rejects(
      loadOciLayout({ dir, registry: target, repo: 'team-b/copy', tag: 'x' }),
      /content has digest sha256:[a-f0-9]+, not the expected/,
    );
    assert.deepEqual(await target.listRepositories(), []);
  });
});
