import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { Registry, RegistryError, mediaTypes } from './index.js';

const sha256 = (data: Buffer | string) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function filesUnder(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true, withFileTypes: true }))
      .filter((entry) => entry.isFile())
      .map((entry) => path.join(entry.parentPath, entry.name));
  } catch {
    return [];
  }
}

function imageManifest(
  config: { digest: string; size: number },
  layers: { digest: string; size: number }[],
) {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, ...config },
      layers: layers.map((layer) => ({ mediaType: mediaTypes.ociLayerGzip, ...layer })),
    }),
  );
}

async function rejectsWith(promise: Promise<unknown>, code: string, status?: number) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RegistryError, `expected a RegistryError, got ${String(error)}`);
    assert.equal(error.code, code);
    if (status !== undefined) assert.equal(error.status, status);
    return true;
  });
}

describe('Registry', () => {
  let dataDir: string;
  let registry: Registry;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-registry-'));
    registry = new Registry({ dataDir });
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  test('stores a blob by content, from a buffer or a stream, once', async () => {
    const data = Buffer.from('hello layer');
    const fromBuffer = await registry.putBlob(data, sha256(data));
    const fromStream = await registry.putBlob(
      Readable.from([Buffer.from('hello '), Buffer.from('layer')]),
    );
    assert.deepEqual(fromBuffer, { digest: sha256(data), size: data.length });
    assert.deepEqual(fromStream, fromBuffer);

    const hex = sha256(data).slice('sha256:'.length);
    const stored = await filesUnder(path.join(dataDir, 'registry', 'blobs'));
    assert.deepEqual(stored, [
      path.join(dataDir, 'registry', 'blobs', 'sha256', hex.slice(0, 2), hex),
    ]);
    assert.deepEqual(await filesUnder(path.join(dataDir, 'registry', 'tmp')), []);

    assert.equal(await registry.hasBlob(sha256(data)), true);
    assert.deepEqual(await registry.statBlob(sha256(data)), { size: data.length });
    assert.equal(
      (await readAll((await registry.openBlob(sha256(data)))!)).toString(),
      'hello layer',
    );
    const part = await registry.openBlob(sha256(data), { start: 6, end: 10 });
    assert.equal((await readAll(part!)).toString(), 'layer');
    assert.equal(await registry.openBlob(sha256('other')), null);
  });

  test('rejects a blob whose digest does not match, and keeps nothing of it', async () => {
    const data = Buffer.from('the real content');
    const claimed = sha256('something else');
    await rejectsWith(registry.putBlob(Readable.from([data]), claimed), 'DIGEST_INVALID', 400);
    assert.equal(await registry.hasBlob(claimed), false);
    assert.equal(await registry.hasBlob(sha256(data)), false);
    assert.deepEqual(await filesUnder(path.join(dataDir, 'registry')), []);
    await rejectsWith(registry.putBlob(data, 'md5:abc'), 'DIGEST_INVALID');
  });

  test('a stream that fails half way leaves no blob behind', async () => {
    const failing = new Readable({
      read() {
        this.push(Buffer.from('partial'));
        this.destroy(new Error('connection reset'));
      },
    });
    await assert.rejects(registry.putBlob(failing), /connection reset/);
    assert.deepEqual(await filesUnder(path.join(dataDir, 'registry')), []);
  });

  test('stores a manifest whose blobs exist, and resolves it by tag and digest', async () => {
    const config = await registry.putBlob(Buffer.from('{}'));
    const layer = await registry.putBlob(Buffer.from('layer bytes'));
    const body = imageManifest(config, [layer]);

    const { digest } = await registry.putManifest('team-a/app', 'v1', body, mediaTypes.ociManifest);
    assert.equal(digest, sha256(body));
    for (const reference of ['v1', digest]) {
      const found = await registry.getManifest('team-a/app', reference);
      assert.deepEqual(found, { body, mediaType: mediaTypes.ociManifest, digest });
    }
    assert.equal(await registry.getManifest('team-a/app', 'v2'), null);
    assert.equal(await registry.getManifest('team-a/other', 'v1'), null);
    assert.deepEqual(await registry.listRepositories(), ['team-a/app']);
    // Pushing the manifest made its blobs part of the repository, and of it only.
    assert.deepEqual(await registry.statRepositoryBlob('team-a/app', layer.digest), {
      size: layer.size,
    });
    assert.equal(await registry.statRepositoryBlob('team-b/app', layer.digest), null);
  });

  test('rejects a manifest that references a missing blob, and records nothing', async () => {
    const config = await registry.putBlob(Buffer.from('{}'));
    const missing = { digest: sha256('never uploaded'), size: 14 };
    const body = imageManifest(config, [missing]);

    await assert.rejects(
      registry.putManifest('team-a/app', 'v1', body, mediaTypes.ociManifest),
      (error) => {
        assert.ok(error instanceof RegistryError);
        assert.equal(error.code, 'MANIFEST_BLOB_UNKNOWN');
        assert.deepEqual(error.detail, { missing: [missing.digest] });
        return true;
      },
    );
    assert.equal(await registry.getManifest('team-a/app', 'v1'), null);
    assert.equal(await registry.hasBlob(sha256(body)), false);
    assert.deepEqual(await registry.listTags('team-a/app'), []);
    assert.equal(await registry.repositoryExists('team-a/app'), false);
  });

  test('the HTTP scope accepts only blobs that belong to the repository', async () => {
    const config = await registry.putBlob(Buffer.from('{}'));
    const layer = await registry.putRepositoryBlob(
      'team-b/secret',
      Buffer.from('team b layer'),
      sha256('team b layer'),
    );
    const body = imageManifest(config, [layer]);
    await rejectsWith(
      registry.putManifest('team-a/app', 'v1', body, mediaTypes.ociManifest, {
        blobsFrom: 'repository',
      }),
      'MANIFEST_BLOB_UNKNOWN',
    );
    await registry.linkBlob('team-a/app', config.digest);
    await registry.linkBlob('team-a/app', layer.digest);
    await registry.putManifest('team-a/app', 'v1', body, mediaTypes.ociManifest, {
      blobsFrom: 'repository',
    });
  });

  test('validates manifests: JSON, media type, descriptors, digest references, sizes', async () => {
    const config = await registry.putBlob(Buffer.from('{}'));
    const good = imageManifest(config, []);
    const put = (
      body: Buffer | string,
      mediaType: string = mediaTypes.ociManifest,
      reference = 'v1',
    ) => registry.putManifest('team-a/app', reference, Buffer.from(body), mediaType);

    await rejectsWith(put('{not json'), 'MANIFEST_INVALID');
    await rejectsWith(put(good, 'application/json'), 'MANIFEST_INVALID');
    await rejectsWith(put(good, mediaTypes.dockerManifest), 'MANIFEST_INVALID'); // body says OCI
    await rejectsWith(put(JSON.stringify({ schemaVersion: 2, layers: [] })), 'MANIFEST_INVALID');
    await rejectsWith(put(good, mediaTypes.ociManifest, sha256('other')), 'DIGEST_INVALID');
    await rejectsWith(put(good, mediaTypes.ociManifest, '-bad-tag'), 'MANIFEST_INVALID');
    await rejectsWith(
      put(imageManifest({ digest: config.digest, size: 99 }, [])),
      'MANIFEST_INVALID',
    );
    await rejectsWith(
      registry.putManifest('Team/App', 'v1', good, mediaTypes.ociManifest),
      'NAME_INVALID',
    );
    await rejectsWith(
      registry.putManifest('app', 'v1', good, mediaTypes.ociManifest),
      'NAME_INVALID',
    );

    const byDigest = await put(good, mediaTypes.ociManifest, sha256(good));
    assert.equal(byDigest.digest, sha256(good));
    // Without a media type the manifest's own mediaType field decides.
    await put(good, '', 'v2');
    assert.equal(
      (await registry.getManifest('team-a/app', 'v2'))?.mediaType,
      mediaTypes.ociManifest,
    );
  });

  test('an index needs its child manifests in the same repository', async () => {
    const config = await registry.putBlob(Buffer.from('{}'));
    const child = imageManifest(config, []);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociIndex,
        manifests: [
          { mediaType: mediaTypes.ociManifest, digest: sha256(child), size: child.length },
        ],
      }),
    );
    await rejectsWith(
      registry.putManifest('team-a/app', 'multi', index, mediaTypes.ociIndex),
      'MANIFEST_BLOB_UNKNOWN',
    );
    await registry.putManifest('team-a/app', sha256(child), child, mediaTypes.ociManifest);
    const { digest } = await registry.putManifest(
      'team-a/app',
      'multi',
      index,
      mediaTypes.ociIndex,
    );
    assert.equal((await registry.getManifest('team-a/app', 'multi'))?.digest, digest);
  });

  test('lists tags in ASCII order, a page at a time', async () => {
    const config = await registry.putBlob(Buffer.from('{}'));
    const body = imageManifest(config, []);
    for (const tag of ['v2', 'latest', 'V1', 'v10', 'a']) {
      await registry.putManifest('team-a/app', tag, body, mediaTypes.ociManifest);
    }
    assert.deepEqual(await registry.listTags('team-a/app'), ['V1', 'a', 'latest', 'v10', 'v2']);
    assert.deepEqual(await registry.listTags('team-a/app', { n: 2 }), ['V1', 'a']);
    assert.deepEqual(await registry.listTags('team-a/app', { n: 2, last: 'a' }), ['latest', 'v10']);
    assert.deepEqual(await registry.listTags('team-a/app', { n: 2, last: 'v10' }), ['v2']);
    assert.deepEqual(await registry.listTags('team-a/app', { last: 'v2' }), []);
    assert.deepEqual(await registry.listTags('team-a/app', { n: 0 }), []);
    assert.deepEqual(await registry.listTags('team-a/none'), []);
  });

  test('deletes tags and manifests', async () => {
    const config = await registry.putBlob(Buffer.from('{}'));
    const body = imageManifest(config, []);
    const { digest } = await registry.putManifest(
      'team-a/app',
      'v1',
      body,
      mediaTypes.ociManifest,
      {
        tags: ['latest', 'stable'],
      },
    );
    assert.deepEqual(await registry.listTags('team-a/app'), ['latest', 'stable', 'v1']);
    assert.equal(await registry.deleteTag('team-a/app', 'stable'), true);
    assert.equal(await registry.deleteTag('team-a/app', 'stable'), false);
    assert.equal((await registry.getManifest('team-a/app', digest))?.digest, digest);

    assert.equal(await registry.deleteManifest('team-a/app', digest), true);
    assert.deepEqual(await registry.listTags('team-a/app'), []);
    assert.equal(await registry.getManifest('team-a/app', digest), null);
    assert.equal(await registry.deleteManifest('team-a/app', digest), false);
  });

  test('upload sessions append in order, verify the digest, and survive a restart', async () => {
    const whole = Buffer.from('0123456789abcdef');
    const session = await registry.uploads.start('team-a/app');
    assert.equal(session.size, 0);

    let status = await registry.uploads.append('team-a/app', session.id, whole.subarray(0, 6), {
      start: 0,
      end: 5,
    });
    assert.equal(status.size, 6);
    await rejectsWith(
      registry.uploads.append('team-a/app', session.id, Buffer.from('xx'), { start: 2, end: 3 }),
      'BLOB_UPLOAD_INVALID',
      416,
    );
    await rejectsWith(
      registry.uploads.append('team-a/app', session.id, Buffer.from('too long'), {
        start: 6,
        end: 7,
      }),
      'SIZE_INVALID',
    );
    await rejectsWith(registry.uploads.status('team-b/app', session.id), 'BLOB_UPLOAD_UNKNOWN');
    await rejectsWith(registry.uploads.status('team-a/app', '../../etc'), 'BLOB_UPLOAD_UNKNOWN');

    // A new process sees the same session and continues where it stood.
    const restarted = new Registry({ dataDir });
    status = await restarted.uploads.status('team-a/app', session.id);
    assert.equal(status.size, 6);
    status = await restarted.uploads.append(
      'team-a/app',
      session.id,
      Readable.from([whole.subarray(6, 10)]),
    );
    assert.equal(status.size, 10);

    await rejectsWith(
      restarted.uploads.finish('team-a/app', session.id, sha256(whole), Buffer.from('wrong!')),
      'DIGEST_INVALID',
    );
    assert.equal(await restarted.hasBlob(sha256(whole)), false);
    assert.equal((await restarted.uploads.status('team-a/app', session.id)).size, 10);
    const stored = await restarted.uploads.finish(
      'team-a/app',
      session.id,
      sha256(whole),
      whole.subarray(10),
      {
        start: 10,
        end: 15,
      },
    );
    assert.deepEqual(stored, { digest: sha256(whole), size: 16 });
    assert.deepEqual(await restarted.statRepositoryBlob('team-a/app', sha256(whole)), { size: 16 });
    assert.deepEqual(await filesUnder(path.join(dataDir, 'registry', 'uploads')), []);
    await rejectsWith(restarted.uploads.status('team-a/app', session.id), 'BLOB_UPLOAD_UNKNOWN');
  });
});
