import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import Fastify from 'fastify';
import { Registry, RegistryError, mediaTypes, registryRoutes } from './index.js';
import { formatBytes } from './quota.js';

const sha256 = (data: Buffer | string) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

function denied(team: string) {
  return (error: unknown) => {
    assert.ok(error instanceof RegistryError, `expected a RegistryError, got ${String(error)}`);
    assert.equal(error.code, 'DENIED');
    assert.equal(error.status, 403);
    assert.match(error.message, new RegExp(`team ${team} `));
    return true;
  };
}

function manifestOf(blobs: Buffer[]) {
  const [config, ...layers] = blobs;
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, digest: sha256(config!), size: config!.length },
      layers: layers.map((layer) => ({
        mediaType: mediaTypes.ociLayerGzip,
        digest: sha256(layer),
        size: layer.length,
      })),
    }),
  );
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []))
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}

describe('registry quotas per team', () => {
  let dataDir: string;
  let registry: Registry;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-quota-'));
    registry = new Registry({ dataDir });
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  test('usage is the distinct blobs linked into the team repositories', async () => {
    const shared = Buffer.alloc(1000, 's');
    const own = Buffer.alloc(300, 'o');
    await registry.putRepositoryBlob('team-a/one', shared, sha256(shared));
    await registry.putRepositoryBlob('team-a/two', shared, sha256(shared));
    await registry.putRepositoryBlob('team-a/two', own, sha256(own));
    await registry.linkBlob('team-b/app', sha256(shared));
    await registry.putBlob(Buffer.alloc(5000)); // in no repository: nobody's

    assert.deepEqual(await registry.teamUsage('team-a'), {
      team: 'team-a',
      usedBytes: 1300,
      quotaBytes: null,
      blobs: 2,
    });
    assert.deepEqual(await registry.teamUsage('team-b'), {
      team: 'team-b',
      usedBytes: 1000,
      quotaBytes: null,
      blobs: 1,
    });
    assert.equal((await registry.teamUsage('team-c')).usedBytes, 0);
    // Counted again from disk by a new process, the same.
    assert.deepEqual(
      await new Registry({ dataDir }).teamUsage('team-a'),
      await registry.teamUsage('team-a'),
    );
    await assert.rejects(registry.teamUsage('team-a/app'), /no "\/"/);
  });

  test('a push past the quota is refused before anything becomes visible', async () => {
    const first = Buffer.alloc(600, '1');
    const second = Buffer.alloc(600, '2');
    assert.deepEqual(await registry.setTeamQuota('team-a', 1000), {
      team: 'team-a',
      usedBytes: 0,
      quotaBytes: 1000,
      blobs: 0,
    });
    await registry.putRepositoryBlob('team-a/app', first, sha256(first));
    const before = await filesUnder(path.join(dataDir, 'registry'));

    // Every way a blob gets into a repository: one POST, an upload session, a mount, a
    // manifest naming stored blobs (trusted callers).
    await assert.rejects(
      registry.putRepositoryBlob('team-a/app', second, sha256(second)),
      (error: unknown) => {
        denied('team-a')(error);
        const message = (error as Error).message;
        assert.match(message, /600 B/);
        assert.match(message, /1000 B/);
        assert.deepEqual((error as RegistryError).detail, {
          team: 'team-a',
          usedBytes: 600,
          quotaBytes: 1000,
          addedBytes: 600,
        });
        return true;
      },
    );
    const session = await registry.uploads.start('team-a/other');
    await registry.uploads.append('team-a/other', session.id, second.subarray(0, 100));
    await assert.rejects(
      registry.uploads.finish('team-a/other', session.id, sha256(second), second.subarray(100)),
      denied('team-a'),
    );
    assert.equal((await registry.uploads.status('team-a/other', session.id)).size, 100);
    await registry.putRepositoryBlob('team-b/app', second, sha256(second));
    await assert.rejects(registry.linkBlob('team-a/app', sha256(second)), denied('team-a'));
    const config = Buffer.from('{}');
    await registry.putBlob(config);
    await assert.rejects(
      registry.putManifest(
        'team-a/app',
        'v1',
        manifestOf([config, first, second]),
        mediaTypes.ociManifest,
      ),
      denied('team-a'),
    );

    assert.equal(await registry.statRepositoryBlob('team-a/app', sha256(second)), null);
    assert.equal(await registry.getManifest('team-a/app', 'v1'), null);
    const after = (await filesUnder(path.join(dataDir, 'registry'))).filter(
      (file) => !file.startsWith('repositories/team-b/') && !file.startsWith('uploads/'),
    );
    const hex = (data: Buffer) => sha256(data).slice(7);
    assert.deepEqual(
      after,
      [
        ...before,
        `blobs/sha256/${hex(second).slice(0, 2)}/${hex(second)}`, // team-b's
        `blobs/sha256/${hex(config).slice(0, 2)}/${hex(config)}`, // in no repository
      ].sort(),
    );
    assert.equal((await registry.teamUsage('team-a')).usedBytes, 600);

    // Within the quota all goes through; what the repository holds already costs nothing.
    await registry.putRepositoryBlob('team-a/app', first, sha256(first));
    await registry.putManifest(
      'team-a/app',
      'v1',
      manifestOf([config, first]),
      mediaTypes.ociManifest,
    );
    assert.equal((await registry.teamUsage('team-a')).usedBytes, 602);
  });

  test('after deleting images and collecting garbage the team can push again', async () => {
    await registry.setTeamQuota('team-a', 1500);
    const config = Buffer.from('{"v":1}');
    const layer = Buffer.alloc(1000, 'x');
    for (const blob of [config, layer])
      await registry.putRepositoryBlob('team-a/app', blob, sha256(blob));
    const { digest } = await registry.putManifest(
      'team-a/app',
      'v1',
      manifestOf([config, layer]),
      mediaTypes.ociManifest,
      { blobsFrom: 'repository' },
    );
    const next = Buffer.alloc(1000, 'y');
    await assert.rejects(
      registry.putRepositoryBlob('team-a/app', next, sha256(next)),
      denied('team-a'),
    );

    await registry.deleteManifest('team-a/app', digest);
    assert.equal((await registry.teamUsage('team-a')).usedBytes, 1007, 'links stay until GC');
    await registry.collectGarbage({ graceMs: 0 });
    assert.equal((await registry.teamUsage('team-a')).usedBytes, 0);
    await registry.putRepositoryBlob('team-a/app', next, sha256(next));
    assert.equal((await registry.teamUsage('team-a')).usedBytes, 1000);
  });

  test('quotas are kept in quotas.json and survive a restart', async () => {
    await registry.setTeamQuota('team-a', 10);
    await registry.setTeamQuota('team-b', 20);
    await registry.setTeamQuota('team-b', null);
    assert.deepEqual(
      JSON.parse(await readFile(path.join(dataDir, 'registry', 'quotas.json'), 'utf8')),
      { teams: { 'team-a': 10 } },
    );
    const restarted = new Registry({ dataDir });
    assert.equal((await restarted.teamUsage('team-a')).quotaBytes, 10);
    assert.equal((await restarted.teamUsage('team-b')).quotaBytes, null);
    await assert.rejects(
      restarted.putRepositoryBlob('team-a/app', Buffer.alloc(11), sha256(Buffer.alloc(11))),
      denied('team-a'),
    );
    await assert.rejects(registry.setTeamQuota('team-a', -1), /whole number/);
    await assert.rejects(registry.setTeamQuota('team-a', 1.5), /whole number/);
  });

  test('two pushes racing for the last bytes: one gets them', async () => {
    await registry.setTeamQuota('team-a', 1000);
    const blobs = [Buffer.alloc(700, 'a'), Buffer.alloc(700, 'b')];
    const results = await Promise.allSettled(
      blobs.map((blob, i) => registry.putRepositoryBlob(`team-a/app${i}`, blob, sha256(blob))),
    );
    assert.deepEqual(results.map((result) => result.status).sort(), ['fulfilled', 'rejected']);
    assert.equal((await registry.teamUsage('team-a')).usedBytes, 700);
  });

  test('over HTTP the refusal is the spec DENIED error, 403', async () => {
    await registry.setTeamQuota('team-a', 10);
    const app = Fastify();
    await app.register(
      registryRoutes(registry, { authenticated: async () => true, authorize: async () => 'ok' }),
    );
    const blob = Buffer.alloc(11, 'z');
    const response = await app.inject({
      method: 'POST',
      url: `/v2/team-a/app/blobs/uploads/?digest=${sha256(blob)}`,
      headers: { 'content-type': 'application/octet-stream' },
      payload: blob,
    });
    assert.equal(response.statusCode, 403);
    const error = (response.json() as { errors: { code: string; message: string }[] }).errors[0]!;
    assert.equal(error.code, 'DENIED');
    assert.match(error.message, /team team-a .* 11 B .* 0 B .* 10 B/);
    assert.equal(await registry.hasBlob(sha256(blob)), false);
    await app.close();
  });

  test('formats sizes in binary units', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB');
    assert.equal(formatBytes(200 * 1024 ** 2), '200 MiB');
  });
});
