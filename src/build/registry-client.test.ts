import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { Registry, hostPlatform, mediaTypes } from '../registry/index.js';
import { resolveBase } from './base-image.js';
import { parseImageReference } from './image-reference.js';
import { serveRegistry, type ServedRegistry } from './registry-fixtures.js';
import { parseChallenge, plainHttpAllowed } from './registry-client.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const BOB = { username: 'bob', password: 'hunter2' };
const dockerConfig = 'application/vnd.docker.container.image.v1+json';
const dockerLayer = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

let root: string;
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'valve-registry-client-'));
});
after(() => rm(root, { recursive: true, force: true }));

/** Stores a small image (config + two layers) and returns its manifest's descriptor. */
async function storeImage(
  registry: Registry,
  repo: string,
  tag: string,
  options: { architecture?: string; docker?: boolean; seed?: string } = {},
) {
  const seed = options.seed ?? tag;
  const layers = [Buffer.from(`layer one ${seed}`), Buffer.from(`layer two ${seed}`.repeat(9000))];
  const config = Buffer.from(
    JSON.stringify({
      architecture: options.architecture ?? hostPlatform().architecture,
      os: 'linux',
      config: { Env: ['PATH=/bin', 'MODE=base'], Cmd: ['sh'], StopSignal: 'SIGINT' },
      rootfs: { type: 'layers', diff_ids: layers.map((layer) => sha256(Buffer.concat([layer]))) },
      history: [{ created_by: 'one' }, { created_by: 'two' }],
    }),
  );
  for (const blob of [config, ...layers]) await registry.putBlob(blob);
  const mediaType = options.docker ? mediaTypes.dockerManifest : mediaTypes.ociManifest;
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: {
        mediaType: options.docker ? dockerConfig : mediaTypes.ociConfig,
        digest: sha256(config),
        size: config.length,
      },
      layers: layers.map((layer) => ({
        mediaType: options.docker ? dockerLayer : mediaTypes.ociLayerGzip,
        digest: sha256(layer),
        size: layer.length,
      })),
    }),
  );
  const { digest } = await registry.putManifest(repo, tag, body, mediaType);
  return { digest, mediaType, size: body.length, blobs: [config, ...layers].map(sha256) };
}

describe('pulling a base from another registry', () => {
  let source: Registry;
  let served: ServedRegistry;
  let single: Awaited<ReturnType<typeof storeImage>>;
  let native: Awaited<ReturnType<typeof storeImage>>;
  let docker: Awaited<ReturnType<typeof storeImage>>;
  const targets: string[] = [];

  before(async () => {
    source = new Registry({ dataDir: path.join(root, 'source') });
    single = await storeImage(source, 'acme/base', 'v1');
    docker = await storeImage(source, 'acme/base', 'docker', { docker: true });
    native = await storeImage(source, 'acme/base', 'host-arch', { seed: 'multi-host' });
    const other = hostPlatform().architecture === 'arm64' ? 'amd64' : 'arm64';
    const foreign = await storeImage(source, 'acme/base', 'other-arch', {
      architecture: other,
      seed: 'multi-other',
    });
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociIndex,
        manifests: [
          { ...foreign, platform: { os: 'linux', architecture: other } },
          { ...native, platform: { os: 'linux', architecture: hostPlatform().architecture } },
          { ...foreign, platform: { os: 'unknown', architecture: 'unknown' } },
        ].map(({ digest, mediaType, size, platform }) => ({ digest, mediaType, size, platform })),
      }),
    );
    await source.putManifest('acme/base', 'multi', index, mediaTypes.ociIndex);
    served = await serveRegistry(source, BOB);
  });
  after(() => served.stop());
  afterEach(() => {
    served.tokenRequests.splice(0);
  });

  async function target(): Promise<Registry> {
    const dir = await mkdtemp(path.join(root, 'target-'));
    targets.push(dir);
    return new Registry({ dataDir: dir });
  }

  test('follows the Bearer challenge with the credentials and copies config and layers', async () => {
    const registry = await target();
    const progress: string[] = [];
    const base = await resolveBase({
      base: `${served.host}/acme/base:v1`,
      registry,
      credentials: BOB,
      onProgress: (line) => progress.push(line),
    });
    assert.equal(base.digest, single.digest);
    assert.equal(base.remote, true);
    assert.deepEqual(served.tokenRequests, [
      { scope: 'repository:acme/base:pull', service: 'valve-test', authorized: true },
    ]);
    for (const digest of single.blobs) assert.ok(await registry.hasBlob(digest), digest);
    assert.deepEqual(base.image.config.Cmd, ['sh']);
    assert.equal(base.image.config.StopSignal, 'SIGINT');
    assert.equal(base.image.diffIds.length, 2);
    assert.equal(base.image.history.length, 2);
    assert.ok(progress.some((line) => line.startsWith('copying layer 2/2')));

    // A second pull finds the blobs in Valve's registry and copies nothing.
    progress.length = 0;
    await resolveBase({
      base: `${served.host}/acme/base:v1`,
      registry,
      credentials: BOB,
      onProgress: (line) => progress.push(line),
    });
    assert.ok(!progress.some((line) => line.startsWith('copying')));
  });

  test("picks the host's platform from an index, and keeps Docker media types", async () => {
    const registry = await target();
    const fromIndex = await resolveBase({
      base: `${served.host}/acme/base:multi`,
      registry,
      credentials: BOB,
    });
    assert.equal(fromIndex.digest, native.digest);
    assert.equal(fromIndex.image.architecture, hostPlatform().architecture);

    await assert.rejects(
      resolveBase({
        base: `${served.host}/acme/base:multi`,
        registry,
        credentials: BOB,
        platform: { os: 'linux', architecture: 's390x' },
      }),
      /has no image for linux\/s390x \(it has linux\/(amd64|arm64), linux\/(amd64|arm64)\)/,
    );

    const fromDocker = await resolveBase({
      base: `${served.host}/acme/base@${docker.digest}`,
      registry,
      credentials: BOB,
    });
    assert.equal(fromDocker.manifest.mediaType, mediaTypes.dockerManifest);
    assert.deepEqual(
      fromDocker.image.layers.map((layer) => layer.mediaType),
      [dockerLayer, dockerLayer],
    );
  });

  test('wrong or missing credentials and unknown images fail, naming the registry', async () => {
    const registry = await target();
    await assert.rejects(
      resolveBase({
        base: `${served.host}/acme/base:v1`,
        registry,
        credentials: { username: 'bob', password: 'wrong' },
      }),
      new RegExp(`getting a pull token from http://${served.host.replace(/\./g, '\\.')}.*HTTP 401`),
    );
    await assert.rejects(
      resolveBase({ base: `${served.host}/acme/base:v1`, registry }),
      /HTTP 401/,
    );
    await assert.rejects(
      resolveBase({ base: `${served.host}/acme/base:nope`, registry, credentials: BOB }),
      /base image 127\.0\.0\.1:\d+\/acme\/base:nope not found/,
    );
    assert.deepEqual(await registry.listRepositories(), []);
  });
});

describe('a registry that serves wrong bytes', () => {
  test('a layer whose content does not match its digest fails and is not stored', async () => {
    const good = Buffer.from('the real layer');
    const bad = Buffer.from('not the layer!');
    const config = Buffer.from(
      JSON.stringify({
        architecture: hostPlatform().architecture,
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [sha256(good)] },
      }),
    );
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociManifest,
        config: { mediaType: mediaTypes.ociConfig, digest: sha256(config), size: config.length },
        layers: [{ mediaType: mediaTypes.ociLayerGzip, digest: sha256(good), size: good.length }],
      }),
    );
    const app = Fastify();
    app.get('/v2/evil/base/manifests/:ref', async (_request, reply) =>
      reply.type(mediaTypes.ociManifest).send(manifest),
    );
    app.get('/v2/evil/base/blobs/:digest', async (request, reply) => {
      const { digest } = request.params as { digest: string };
      return reply.type('application/octet-stream').send(digest === sha256(config) ? config : bad);
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = app.server.address() as { port: number };
      const registry = new Registry({ dataDir: await mkdtemp(path.join(root, 'evil-')) });
      await assert.rejects(
        resolveBase({ base: `127.0.0.1:${port}/evil/base:v1`, registry }),
        /blob sha256:[a-f0-9]{64} from 127\.0\.0\.1:\d+ has digest sha256:[a-f0-9]{64}: the content is not it/,
      );
      assert.equal(await registry.hasBlob(sha256(good)), false);
      assert.equal(await registry.hasBlob(sha256(bad)), false);

      await assert.rejects(
        resolveBase({
          base: `127.0.0.1:${port}/evil/base@sha256:${'0'.repeat(64)}`,
          registry,
        }),
        /the manifest 127\.0\.0\.1:\d+\/evil\/base@sha256:0+ has digest sha256:/,
      );
    } finally {
      await app.close();
    }
  });
});

describe('references and challenges', () => {
  test('parseImageReference tells hosts from Valve names and names the parameter', () => {
    assert.deepEqual(parseImageReference('127.0.0.1:5000/base/busybox:1'), {
      host: '127.0.0.1:5000',
      repository: 'base/busybox',
      tag: '1',
      digest: undefined,
    });
    assert.equal(parseImageReference('team/app:v1').host, '');
    assert.equal(parseImageReference('localhost/app').host, 'localhost');
    assert.equal(parseImageReference('ghcr.io/org/app').tag, undefined);
    assert.throws(
      () => parseImageReference('Team/App'),
      /^ValveError: base: "Team\/App" has an invalid repository name/,
    );
    assert.throws(() => parseImageReference('a/b@sha256:12', 'with.base'), /with\.base: .*digest/);
  });

  test('plain http only for loopback and listed hosts', () => {
    assert.equal(plainHttpAllowed('127.0.0.1:5000'), true);
    assert.equal(plainHttpAllowed('localhost'), true);
    assert.equal(plainHttpAllowed('[::1]:5000'), true);
    assert.equal(plainHttpAllowed('registry.lan:5000'), false);
    assert.equal(plainHttpAllowed('registry.lan:5000', ['registry.lan:5000']), true);
    assert.equal(plainHttpAllowed('registry.lan:5000', ['registry.lan']), true);
  });

  test('parseChallenge reads Bearer and Basic', () => {
    assert.deepEqual(
      parseChallenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"',
      ),
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.example/token',
          service: 'reg',
          scope: 'repository:a/b:pull',
        },
      },
    );
    assert.deepEqual(parseChallenge('Basic realm="test"'), {
      scheme: 'basic',
      params: { realm: 'test' },
    });
  });
});
