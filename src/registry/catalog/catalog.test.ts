import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { openStore, type Store } from '../../store/index.js';
import { Registry, mediaTypes } from '../index.js';
import {
  ImageCatalog,
  PushLog,
  recordPipelinePushes,
  registryCatalogMigrations,
  type RunningRun,
} from './index.js';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('image catalog', () => {
  let dataDir: string;
  let store: Store;
  let registry: Registry;
  let pushes: PushLog;
  let catalog: ImageCatalog;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-catalog-'));
    store = await openStore(path.join(dataDir, 'valve.db'), [registryCatalogMigrations]);
    registry = new Registry({ dataDir });
    pushes = new PushLog(store.db);
    catalog = new ImageCatalog(registry, pushes);
  });
  afterEach(async () => {
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Stores an image (config and layers) with `registry`, returning its manifest's digest. */
  async function putImage(
    repo: string,
    reference: string,
    options: { arch?: string; layers?: string[]; labels?: Record<string, string> } = {},
    into: Registry = registry,
  ) {
    const configBody = json({
      created: '2026-01-02T03:04:05Z',
      os: 'linux',
      architecture: options.arch ?? 'amd64',
      config: {
        Entrypoint: ['node'],
        Cmd: ['server.js'],
        Env: ['PORT=8080'],
        ExposedPorts: { '8080/tcp': {} },
        WorkingDir: '/app',
        User: 'node',
        Labels: { team: 'dev', ...options.labels },
      },
      rootfs: { type: 'layers', diff_ids: [] },
    });
    const config = await into.putBlob(configBody);
    const layers = [];
    for (const content of options.layers ?? ['base layer', 'app layer']) {
      const blob = await into.putBlob(Buffer.from(content));
      layers.push({ mediaType: mediaTypes.ociLayerGzip, ...blob });
    }
    const body = json({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, ...config },
      layers,
    });
    const { digest } = await into.putManifest(repo, reference, body, mediaTypes.ociManifest);
    return { digest, size: body.length + config.size + layers.reduce((s, l) => s + l.size, 0) };
  }

  test('tags: digest, size, platform, created and who pushed', async () => {
    const image = await putImage('dev/hello', 'v1');
    await registry.putManifest(
      'dev/hello',
      'latest',
      (await registry.getManifest('dev/hello', 'v1'))!.body,
      mediaTypes.ociManifest,
    );
    await pushes.record({
      repo: 'dev/hello',
      digest: image.digest,
      mediaType: mediaTypes.ociManifest,
      size: 100,
      tags: ['v1', 'latest'],
      pushedBy: 'ada',
      via: 'registry',
    });

    const tags = await catalog.tags('dev/hello');
    assert.deepEqual(
      tags.map((t) => t.tag),
      ['latest', 'v1'],
    );
    const v1 = tags.find((t) => t.tag === 'v1')!;
    assert.equal(v1.digest, image.digest);
    assert.equal(v1.kind, 'image');
    assert.equal(v1.size, image.size);
    assert.deepEqual(v1.platforms, [{ os: 'linux', architecture: 'amd64' }]);
    assert.equal(v1.created, '2026-01-02T03:04:05Z');
    assert.equal(v1.pushed?.by, 'ada');
    assert.equal(v1.pushed?.via, 'registry');

    const summary = await catalog.summary('dev/hello');
    assert.equal(summary.tagCount, 2);
    // Both tags point at one image: its blobs count once.
    assert.equal(summary.size, image.size);
    assert.equal(summary.lastPush?.by, 'ada');
    assert.deepEqual(await catalog.repositoriesOf('dev'), ['dev/hello']);
    assert.deepEqual(await catalog.repositoriesOf('other'), []);
  });

  test('manifest detail: config, layers, tags; an index lists platforms and sums its images', async () => {
    const amd = await putImage('dev/multi', 'amd', { layers: ['shared', 'amd only'] });
    const arm = await putImage('dev/multi', 'arm', {
      arch: 'arm64',
      layers: ['shared', 'arm only'],
    });
    const indexBody = json({
      schemaVersion: 2,
      mediaType: mediaTypes.ociIndex,
      manifests: [
        {
          mediaType: mediaTypes.ociManifest,
          digest: amd.digest,
          size: (await registry.getManifest('dev/multi', amd.digest))!.body.length,
          platform: { os: 'linux', architecture: 'amd64' },
        },
        {
          mediaType: mediaTypes.ociManifest,
          digest: arm.digest,
          size: (await registry.getManifest('dev/multi', arm.digest))!.body.length,
          platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
        },
      ],
    });
    const { digest: indexDigest } = await registry.putManifest(
      'dev/multi',
      'both',
      indexBody,
      mediaTypes.ociIndex,
    );

    const image = await catalog.manifest('dev/multi', amd.digest);
    assert.ok(image);
    assert.equal(image.kind, 'image');
    assert.deepEqual(image.tags, ['amd']);
    assert.equal(image.layers.length, 2);
    assert.equal(image.layers[1]!.size, Buffer.byteLength('amd only'));
    assert.equal(image.config?.architecture, 'amd64');
    assert.deepEqual(image.config?.entrypoint, ['node']);
    assert.deepEqual(image.config?.cmd, ['server.js']);
    assert.deepEqual(image.config?.env, ['PORT=8080']);
    assert.deepEqual(image.config?.ports, ['8080/tcp']);
    assert.equal(image.config?.user, 'node');
    assert.equal(image.config?.workdir, '/app');
    assert.deepEqual(image.config?.labels, { team: 'dev' });
    assert.deepEqual(image.manifests, []);

    const index = await catalog.manifest('dev/multi', 'both');
    assert.ok(index);
    assert.equal(index.digest, indexDigest);
    assert.equal(index.kind, 'index');
    assert.equal(index.config, null);
    assert.equal(index.size, indexBody.length + amd.size + arm.size);
    assert.deepEqual(
      index.manifests.map((m) => [m.digest, m.size, m.platform?.architecture]),
      [
        [amd.digest, amd.size, 'amd64'],
        [arm.digest, arm.size, 'arm64'],
      ],
    );
    assert.deepEqual(index.platforms, [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ]);
    const both = (await catalog.tags('dev/multi')).find((t) => t.tag === 'both')!;
    assert.equal(both.kind, 'index');
    assert.equal(both.size, index.size);
    assert.equal(both.created, '2026-01-02T03:04:05Z');

    // The repository: every distinct blob and manifest once ("shared" is in both images).
    const summary = await catalog.summary('dev/multi');
    assert.equal(summary.size, indexBody.length + amd.size + arm.size - 'shared'.length);

    assert.equal(await catalog.manifest('dev/multi', 'nope'), null);
    assert.equal(await catalog.manifest('dev/none', 'both'), null);
  });

  test('referrers are listed where the registry keeps them', async (t) => {
    const image = await putImage('dev/hello', 'v1');
    if (!('listReferrers' in registry)) return t.skip('this registry has no referrers API');
    const empty = await registry.putBlob(Buffer.from('{}'));
    const signature = await registry.putBlob(Buffer.from('signature'));
    const { digest } = await registry.putManifest(
      'dev/hello',
      'sig',
      json({
        schemaVersion: 2,
        mediaType: mediaTypes.ociManifest,
        artifactType: 'application/vnd.example.signature',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty },
        layers: [{ mediaType: 'application/octet-stream', ...signature }],
        subject: {
          mediaType: mediaTypes.ociManifest,
          digest: image.digest,
          size: (await registry.getManifest('dev/hello', image.digest))!.body.length,
        },
      }),
      mediaTypes.ociManifest,
    );
    const detail = await catalog.manifest('dev/hello', 'v1');
    assert.deepEqual(
      detail?.referrers?.map((r) => [r.digest, r.artifactType]),
      [[digest, 'application/vnd.example.signature']],
    );
    const artifact = await catalog.manifest('dev/hello', 'sig');
    assert.equal(artifact?.subject?.digest, image.digest);
    assert.equal(artifact?.artifactType, 'application/vnd.example.signature');
    // Not an image config: nothing is read from it.
    assert.equal(artifact?.config?.os, null);
  });

  test('deleting a tag leaves the manifest, reachable by digest', async () => {
    const image = await putImage('dev/hello', 'v1');
    assert.equal(await catalog.deleteTag('dev/hello', 'v1'), true);
    assert.equal(await catalog.deleteTag('dev/hello', 'v1'), false);
    assert.deepEqual(await catalog.tags('dev/hello'), []);
    assert.deepEqual((await catalog.manifest('dev/hello', image.digest))?.tags, []);
  });

  test('pipeline pushes are recorded with the run building that commit', async () => {
    const commit = 'a'.repeat(40);
    let running: RunningRun[] = [
      { id: 'run_1', number: 7, actor: 'ada', commit },
      { id: 'run_2', number: 8, actor: 'bob', commit: 'b'.repeat(40) },
    ];
    const recording = recordPipelinePushes(registry, pushes, async (team, app) => {
      assert.deepEqual([team, app], ['dev', 'hello']);
      return running;
    });
    const labels = { 'org.opencontainers.image.revision': commit };
    const first = await putImage('dev/hello', 'aaaaaaaaaaaa', { labels }, recording);
    // Stored in the one registry: visible through the plain object too.
    assert.ok(await registry.getManifest('dev/hello', first.digest));
    let [tag] = await catalog.tags('dev/hello');
    assert.deepEqual(tag?.pushed && { ...tag.pushed, at: undefined }, {
      by: 'ada',
      at: undefined,
      via: 'pipeline',
      run: 7,
    });

    // Two runs at the same commit: no run is named, the user still is when it is the same.
    running = [
      { id: 'run_3', number: 9, actor: 'ada', commit },
      { id: 'run_4', number: 10, actor: 'ada', commit },
    ];
    await putImage('dev/hello', 'second', { labels, layers: ['other'] }, recording);
    tag = (await catalog.tags('dev/hello')).find((t) => t.tag === 'second');
    assert.equal(tag?.pushed?.by, 'ada');
    assert.equal(tag?.pushed?.run, null);
  });
});
