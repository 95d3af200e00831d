import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { WriteFence } from './gc.js';
import { Registry, mediaTypes } from './index.js';

const sha256 = (data: Buffer | string) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;
const REPO = 'team-a/app';
const DAY = 24 * 60 * 60 * 1000;

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Pushes an image as a client does: blobs into the repository, then the manifest. */
async function pushImage(registry: Registry, repo: string, tag: string, layers: string[]) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', tag }));
  const blobs = [config, ...layers.map((layer) => Buffer.from(layer))];
  for (const blob of blobs) await registry.putRepositoryBlob(repo, blob, sha256(blob));
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, digest: sha256(config), size: config.length },
      layers: blobs.slice(1).map((blob) => ({
        mediaType: mediaTypes.ociLayerGzip,
        digest: sha256(blob),
        size: blob.length,
      })),
    }),
  );
  const { digest } = await registry.putManifest(repo, tag, body, mediaTypes.ociManifest, {
    blobsFrom: 'repository',
  });
  return { digest, body, blobs: blobs.map(sha256) };
}

async function pushIndex(registry: Registry, repo: string, tag: string, children: string[]) {
  const entries = [];
  for (const child of children) {
    const stored = await registry.getManifest(repo, child);
    entries.push({
      mediaType: stored!.mediaType,
      digest: stored!.digest,
      size: stored!.body.length,
    });
  }
  const body = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests: entries }),
  );
  return registry.putManifest(repo, tag, body, mediaTypes.ociIndex, { blobsFrom: 'repository' });
}

/** Every manifest of every repository pulls, and so does every blob it references. */
async function assertEverythingPulls(registry: Registry) {
  for (const repo of await registry.listRepositories()) {
    for (const tag of await registry.listTags(repo)) {
      const manifest = await registry.getManifest(repo, tag);
      assert.ok(manifest, `${repo}:${tag} pulls`);
      const json = JSON.parse(manifest.body.toString()) as {
        config?: { digest: string; size: number };
        layers?: { digest: string; size: number }[];
        manifests?: { digest: string }[];
      };
      for (const blob of [...(json.config ? [json.config] : []), ...(json.layers ?? [])]) {
        assert.deepEqual(await registry.statRepositoryBlob(repo, blob.digest), { size: blob.size });
        const bytes = await readAll((await registry.openBlob(blob.digest))!);
        assert.equal(sha256(bytes), blob.digest);
      }
      for (const child of json.manifests ?? []) {
        assert.ok(await registry.getManifest(repo, child.digest), `${child.digest} pulls`);
      }
    }
  }
}

async function storedDigests(dataDir: string): Promise<string[]> {
  const dir = path.join(dataDir, 'registry', 'blobs', 'sha256');
  const found: string[] = [];
  for (const prefix of await readdir(dir).catch(() => [])) {
    for (const hex of await readdir(path.join(dir, prefix))) found.push(`sha256:${hex}`);
  }
  return found.sort();
}

describe('registry garbage collection', () => {
  let dataDir: string;
  let registry: Registry;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-gc-'));
    registry = new Registry({ dataDir });
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  test('removes what nothing references, keeps images and indexes, and they still pull', async () => {
    const amd = await pushImage(registry, REPO, 'amd64', ['base layer', 'amd layer']);
    const arm = await pushImage(registry, REPO, 'arm64', ['base layer', 'arm layer']);
    const index = await pushIndex(registry, REPO, 'latest', [amd.digest, arm.digest]);
    // The arm64 tag goes, but the index still references the arm64 manifest.
    assert.equal(await registry.deleteTag(REPO, 'arm64'), true);
    const other = await pushImage(registry, 'team-b/site', 'v1', ['base layer', 'site layer']);
    const orphan = Buffer.from('pushed, never used by a manifest');
    await registry.putRepositoryBlob(REPO, orphan, sha256(orphan));
    const gone = await pushImage(registry, 'team-b/old', 'v0', ['old layer', 'base layer']);
    await registry.deleteManifest('team-b/old', gone.digest);
    const before = await storedDigests(dataDir);

    const dryRun = await registry.collectGarbage({ dryRun: true, graceMs: 0 });
    assert.deepEqual(await storedDigests(dataDir), before, 'a dry run deletes nothing');
    const expected = [orphan, 'old layer'].map((data) => sha256(data));
    expected.push(gone.digest, gone.blobs[0]!);
    assert.deepEqual(dryRun.deletedBlobs.map((blob) => blob.digest).sort(), expected.sort());
    assert.equal(dryRun.dryRun, true);

    const report = await registry.collectGarbage({ graceMs: 0 });
    assert.deepEqual(report.deletedBlobs, dryRun.deletedBlobs);
    assert.deepEqual(report.removedLinks, dryRun.removedLinks);
    assert.equal(
      report.bytesFreed,
      report.deletedBlobs.reduce((sum, blob) => sum + blob.size, 0),
    );
    assert.deepEqual(
      report.removedLinks.map((link) => `${link.repo}@${link.digest}`).sort(),
      [
        `${REPO}@${sha256(orphan)}`,
        `team-b/old@${sha256('old layer')}`,
        `team-b/old@${sha256('base layer')}`,
        `team-b/old@${gone.blobs[0]}`,
      ].sort(),
    );
    const kept = [
      ...amd.blobs,
      ...arm.blobs,
      ...other.blobs,
      amd.digest,
      arm.digest,
      index.digest,
      other.digest,
    ];
    assert.deepEqual(await storedDigests(dataDir), [...new Set(kept)].sort());
    assert.equal(report.keptBlobs, new Set(kept).size);
    assert.deepEqual(report.problems, []);
    await assertEverythingPulls(registry);
    assert.ok(await registry.getManifest(REPO, arm.digest), 'the untagged child still pulls');
    assert.equal(await registry.statRepositoryBlob(REPO, sha256(orphan)), null);

    const again = await registry.collectGarbage({ graceMs: 0 });
    assert.deepEqual([again.deletedBlobs, again.removedLinks], [[], []], 'nothing more to do');
  });

  test('keeps referrers (signatures, SBOMs) and what they reference', async () => {
    const image = await pushImage(registry, REPO, 'v1', ['layer']);
    const signature = Buffer.from('signature bytes');
    const empty = Buffer.from('{}');
    for (const blob of [signature, empty])
      await registry.putRepositoryBlob(REPO, blob, sha256(blob));
    const referrer = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociManifest,
        artifactType: 'application/vnd.example.signature',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: 2 },
        layers: [
          {
            mediaType: 'application/octet-stream',
            digest: sha256(signature),
            size: signature.length,
          },
        ],
        subject: {
          mediaType: mediaTypes.ociManifest,
          digest: image.digest,
          size: image.body.length,
        },
      }),
    );
    const { digest } = await registry.putManifest(
      REPO,
      sha256(referrer),
      referrer,
      mediaTypes.ociManifest,
      {
        blobsFrom: 'repository',
      },
    );
    const report = await registry.collectGarbage({ graceMs: 0 });
    assert.deepEqual(report.deletedBlobs, []);
    assert.ok(await registry.getManifest(REPO, digest));
    assert.deepEqual(await registry.statRepositoryBlob(REPO, sha256(signature)), {
      size: signature.length,
    });
  });

  test('keeps unreferenced blobs and links younger than the grace period', async () => {
    const layer = Buffer.from('a push in progress: layers first, the manifest later');
    await registry.putRepositoryBlob(REPO, layer, sha256(layer));
    const builderLayer = Buffer.from('the builder stores blobs in no repository first');
    await registry.putBlob(builderLayer);
    const report = await registry.collectGarbage();
    assert.deepEqual([report.deletedBlobs, report.removedLinks], [[], []]);
    assert.deepEqual(await registry.statRepositoryBlob(REPO, sha256(layer)), {
      size: layer.length,
    });
    assert.ok(await registry.hasBlob(sha256(builderLayer)));
  });

  test('keeps a blob uploaded during the collection, even one it was about to delete', async () => {
    const data = Buffer.from('stored long ago, referenced by nothing');
    await registry.putBlob(data);
    // Without a push in between, the collection deletes it.
    const alone = await new Registry({ dataDir }).collectGarbage({ dryRun: true, graceMs: 0 });
    assert.deepEqual(
      alone.deletedBlobs.map((blob) => blob.digest),
      [sha256(data)],
    );

    const fresh = Buffer.from('a layer nobody had before');
    const report = await registry.collectGarbage({
      graceMs: 0,
      afterMark: async () => {
        // After the mark, before the sweep: the same content is pushed again (deduplicated:
        // nothing new is written), through an upload session, and a new blob arrives too.
        const session = await registry.uploads.start(REPO);
        await registry.uploads.finish(REPO, session.id, sha256(data), data);
        await registry.putRepositoryBlob('team-b/app', fresh, sha256(fresh));
      },
    });
    assert.deepEqual(report.deletedBlobs, []);
    assert.deepEqual(await registry.statRepositoryBlob(REPO, sha256(data)), { size: data.length });
    assert.deepEqual(await registry.statRepositoryBlob('team-b/app', sha256(fresh)), {
      size: fresh.length,
    });
    // And the manifest that follows the upload is accepted.
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociManifest,
        config: { mediaType: mediaTypes.ociConfig, digest: sha256(data), size: data.length },
        layers: [],
      }),
    );
    await registry.putManifest(REPO, 'v1', manifest, mediaTypes.ociManifest, {
      blobsFrom: 'repository',
    });
    await assertEverythingPulls(registry);
  });

  test('removes upload sessions and staging files idle past the limit', async () => {
    const idle = await registry.uploads.start(REPO);
    await registry.uploads.append(REPO, idle.id, Buffer.from('half a layer'));
    const active = await registry.uploads.start(REPO);
    const sessionDir = path.join(dataDir, 'registry', 'uploads', idle.id);
    const longAgo = new Date(Date.now() - 2 * DAY);
    for (const name of ['info.json', 'data', '.'])
      await utimes(path.join(sessionDir, name), longAgo, longAgo);
    const staging = path.join(dataDir, 'registry', 'tmp');
    await mkdir(staging, { recursive: true });
    await writeFile(path.join(staging, 'left-by-a-crash'), 'partial');
    await utimes(path.join(staging, 'left-by-a-crash'), longAgo, longAgo);
    await writeFile(path.join(staging, 'being-written'), 'partial');

    const dryRun = await registry.collectGarbage({ dryRun: true });
    assert.deepEqual(
      dryRun.removedUploads.map((upload) => [upload.id, upload.repo, upload.size]),
      [[idle.id, REPO, 12]],
    );
    assert.equal((await registry.uploads.status(REPO, idle.id)).size, 12);

    const report = await registry.collectGarbage();
    assert.deepEqual(report.removedUploads, dryRun.removedUploads);
    assert.deepEqual(report.removedStagingFiles, [{ name: 'left-by-a-crash', size: 7 }]);
    assert.equal(report.bytesFreed, 12 + 7);
    await assert.rejects(registry.uploads.status(REPO, idle.id), /no upload/);
    assert.equal((await registry.uploads.status(REPO, active.id)).size, 0);
    assert.deepEqual(await readdir(staging), ['being-written']);
  });

  test('collections run one at a time', async () => {
    await pushImage(registry, REPO, 'v1', ['layer']);
    const order: string[] = [];
    const first = registry.collectGarbage({
      afterMark: async () => {
        order.push('first marked');
        await new Promise((resolve) => setTimeout(resolve, 50));
        order.push('first sweeps');
      },
    });
    const second = registry.collectGarbage({
      afterMark: async () => void order.push('second marked'),
    });
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first marked', 'first sweeps', 'second marked']);
  });
});

describe('WriteFence', () => {
  test('a removal skips what a write holds or held since, and a write waits for a removal', async () => {
    const fence = new WriteFence(60_000);
    const start = Date.now();
    const epoch = fence.beginCollection();
    let release!: () => void;
    const holding = fence.hold(
      ['sha256:a'],
      () => new Promise<void>((resolve) => (release = resolve)),
    );
    assert.equal(
      await fence.removeUnlessHeld('sha256:a', start, epoch, async () => assert.fail('held')),
      false,
    );
    release();
    await holding;
    assert.equal(
      await fence.removeUnlessHeld('sha256:a', start, epoch, async () => assert.fail('held since')),
      false,
    );
    assert.equal(fence.isHeldSince('sha256:a', Date.now() + 1, Infinity), false);

    let finishRemoval!: () => void;
    const events: string[] = [];
    const removal = fence.removeUnlessHeld('sha256:b', start, epoch, async () => {
      await new Promise<void>((resolve) => (finishRemoval = resolve));
      events.push('removed');
    });
    const write = fence.hold(['sha256:b'], async () => void events.push('written'));
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(events, []);
    finishRemoval();
    assert.equal(await removal, true);
    await write;
    assert.deepEqual(events, ['removed', 'written']);
  });
});
