import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { Registry, mediaTypes, registryRoutes } from '../../registry/index.js';
import { parseChallenge } from './distribution-client.js';
import { parseImageReference, pushImageStep } from './push-image.js';
import { stepFixture, type StepFixture } from './step-fixture.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const VALVE_HOST = 'valve.test:8443';
const BOB = `Basic ${Buffer.from('bob:hunter2').toString('base64')}`;

let dataRoot: string;
/** Valve's own registry, the source (used in process, as the runner provides it). */
let source: Registry;
let image: { digest: string; body: Buffer; blobs: string[] };
let index: { digest: string; children: string[] };

/** Stores an image (config + layers) in the source registry under acme/shop:<tag>. */
async function storeImage(tag: string, seed: string, os_ = 'linux', arch = 'amd64') {
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: os_, seed }));
  const layers = [Buffer.from(`layer one ${seed}`), Buffer.from(`layer two ${seed}`.repeat(5000))];
  for (const blob of [config, ...layers]) await source.putBlob(blob);
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, digest: sha256(config), size: config.length },
      layers: layers.map((layer) => ({
        mediaType: mediaTypes.ociLayerGzip,
        digest: sha256(layer),
        size: layer.length,
      })),
    }),
  );
  const { digest } = await source.putManifest('acme/shop', tag, body, mediaTypes.ociManifest);
  return { digest, body, blobs: [config, ...layers].map(sha256) };
}

before(async () => {
  dataRoot = await mkdtemp(path.join(os.tmpdir(), 'valve-push-image-'));
  source = new Registry({ dataDir: path.join(dataRoot, 'valve') });
  image = await storeImage('v1', 'one');
  const amd = await storeImage('amd64', 'amd');
  const arm = await storeImage('arm64', 'arm', 'linux', 'arm64');
  const indexBody = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociIndex,
      manifests: [amd, arm].map((child, i) => ({
        mediaType: mediaTypes.ociManifest,
        digest: child.digest,
        size: child.body.length,
        platform: { os: 'linux', architecture: i === 0 ? 'amd64' : 'arm64' },
      })),
    }),
  );
  const stored = await source.putManifest('acme/shop', 'multi', indexBody, mediaTypes.ociIndex);
  index = { digest: stored.digest, children: [amd.digest, arm.digest] };
});
after(() => rm(dataRoot, { recursive: true, force: true }));

/**
 * A second Valve registry served over HTTP on loopback, as the external target. `bearer`
 * puts a token service in front, the way Docker Hub and GHCR challenge clients.
 */
interface Target {
  registry: Registry;
  host: string;
  tokenRequests: { scope: string | null; service: string | null; authorization?: string }[];
  close(): Promise<void>;
}

async function startTarget(auth: 'basic' | 'bearer'): Promise<Target> {
  const registry = new Registry({ dataDir: await mkdtemp(path.join(dataRoot, 'target-')) });
  const app: FastifyInstance = Fastify();
  const tokenRequests: Target['tokenRequests'] = [];
  const allowed = (request: FastifyRequest) =>
    auth === 'basic'
      ? request.headers.authorization === BOB
      : request.headers.authorization === 'Bearer token-for-bob';
  if (auth === 'bearer') {
    app.get('/token', async (request, reply) => {
      const query = request.query as Record<string, string>;
      tokenRequests.push({
        scope: query.scope ?? null,
        service: query.service ?? null,
        authorization: request.headers.authorization,
      });
      if (request.headers.authorization !== BOB) return reply.code(401).send({});
      return { token: 'token-for-bob', expires_in: 300 };
    });
  }
  await app.register(async (scope) => {
    if (auth === 'bearer') {
      scope.addHook('onSend', async (request, reply, payload) => {
        if (reply.statusCode === 401) {
          const port = (app.server.address() as AddressInfo).port;
          reply.header(
            'www-authenticate',
            `Bearer realm="http://127.0.0.1:${port}/token",service="target.test",scope="repository:mirror/shop:pull,push"`,
          );
        }
        return payload;
      });
    }
    await scope.register(
      registryRoutes(registry, {
        authenticated: async (request) => allowed(request),
        authorize: async (request, repo) =>
          !allowed(request) ? 'unauthenticated' : repo.startsWith('mirror/') ? 'ok' : 'denied',
      }),
    );
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  return {
    registry,
    host: `127.0.0.1:${port}`,
    tokenRequests,
    close: () => app.close(),
  };
}

const fixtures: StepFixture[] = [];
const targets: Target[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.cleanup();
  for (const target of targets.splice(0)) await target.close();
});

async function setup(auth: 'basic' | 'bearer') {
  const target = await startTarget(auth);
  targets.push(target);
  const fixture = await stepFixture({
    services: { registry: source, registryHost: () => VALVE_HOST },
  });
  fixtures.push(fixture);
  const push = (raw: Record<string, string>) =>
    pushImageStep.run(
      fixture.context,
      pushImageStep.inputs.parse({
        username: 'bob',
        password: 'hunter2',
        insecure: 'true',
        ...raw,
      }),
    );
  return { target, fixture, push };
}

describe('valve/push-image', () => {
  test('copies an image byte for byte with Basic auth; a second push uploads nothing', async () => {
    const { target, fixture, push } = await setup('basic');
    const outputs = await push({
      image: `${VALVE_HOST}/acme/shop:v1`,
      to: `${target.host}/mirror/shop:release`,
    });
    assert.deepEqual(outputs, {
      digest: image.digest,
      image: `${target.host}/mirror/shop@${image.digest}`,
    });
    const copied = await target.registry.getManifest('mirror/shop', 'release');
    assert.equal(copied?.digest, image.digest);
    assert.deepEqual(copied?.body, image.body);
    for (const blob of image.blobs) {
      assert.ok(await target.registry.statRepositoryBlob('mirror/shop', blob), blob);
    }
    assert.match(fixture.logs.at(-1)!, /3 blob\(s\) uploaded, 0 already there/);

    await push({ image: `acme/shop@${image.digest}`, to: `${target.host}/mirror/shop:again` });
    assert.match(fixture.logs.at(-1)!, /0 blob\(s\) uploaded, 3 already there/);
    assert.equal((await target.registry.getManifest('mirror/shop', 'again'))?.digest, image.digest);
  });

  test('a Bearer challenge: a token from the realm, with the credentials, for the scope', async () => {
    const { target, push } = await setup('bearer');
    await push({ image: `${VALVE_HOST}/acme/shop:v1`, to: `${target.host}/mirror/shop:v1` });
    assert.equal((await target.registry.getManifest('mirror/shop', 'v1'))?.digest, image.digest);
    assert.ok(target.tokenRequests.length >= 1);
    assert.deepEqual(target.tokenRequests[0], {
      scope: 'repository:mirror/shop:pull,push',
      service: 'target.test',
      authorization: BOB,
    });
  });

  test('an index: every child manifest and its blobs, then the index under the tag', async () => {
    const { target, push } = await setup('basic');
    const outputs = await push({
      image: `${VALVE_HOST}/acme/shop:multi`,
      to: `${target.host}/mirror/shop:multi`,
    });
    assert.equal(outputs.digest, index.digest);
    const copied = await target.registry.getManifest('mirror/shop', 'multi');
    assert.equal(copied?.mediaType, mediaTypes.ociIndex);
    for (const child of index.children) {
      assert.equal((await target.registry.getManifest('mirror/shop', child))?.digest, child);
    }
  });

  test('without a tag in `to`, the source tag; with a digest source, by digest', async () => {
    const { target, push } = await setup('basic');
    await push({ image: `${VALVE_HOST}/acme/shop:v1`, to: `${target.host}/mirror/shop` });
    assert.equal((await target.registry.getManifest('mirror/shop', 'v1'))?.digest, image.digest);
    const byDigest = await push({
      image: `${VALVE_HOST}/acme/shop@${image.digest}`,
      to: `${target.host}/mirror/pinned`,
    });
    assert.equal(byDigest.image, `${target.host}/mirror/pinned@${image.digest}`);
    assert.deepEqual(await target.registry.listTags('mirror/pinned'), []);
  });

  test('wrong credentials, a denied repository and a plain-http target without insecure fail', async () => {
    const { target, push } = await setup('basic');
    await assert.rejects(
      push({ image: 'acme/shop:v1', to: `${target.host}/mirror/shop:x`, password: 'wrong' }),
      /HTTP 401 \((UNAUTHORIZED|the registry refused the credentials)/,
    );
    await assert.rejects(
      push({ image: 'acme/shop:v1', to: `${target.host}/other/shop:x` }),
      /HTTP 403 \(DENIED/,
    );
    await assert.rejects(
      push({ image: 'acme/shop:v1', to: `${target.host}/mirror/shop:x`, insecure: 'false' }),
      new RegExp(`cannot reach https://${target.host.replace(/\./g, '\\.')}: `),
    );
  });

  test("only images of the run's team in Valve's registry, and a target with a host", async () => {
    const { target, push } = await setup('basic');
    await assert.rejects(
      push({ image: `${VALVE_HOST}/other-team/app:v1`, to: `${target.host}/mirror/x:v1` }),
      /other-team\/app is not a repository of team acme/,
    );
    await assert.rejects(
      push({ image: 'ghcr.io/acme/shop:v1', to: `${target.host}/mirror/x:v1` }),
      /is not in Valve's registry \(valve\.test:8443\)/,
    );
    await assert.rejects(
      push({ image: 'acme/shop:nope', to: `${target.host}/mirror/x:v1` }),
      /acme\/shop:nope is not in Valve's registry/,
    );
    await assert.rejects(
      push({ image: 'acme/shop', to: `${target.host}/mirror/x` }),
      /needs a :tag/,
    );
    await assert.rejects(
      push({ image: 'acme/shop:v1', to: 'mirror/x:v1' }),
      /names no registry host/,
    );
    await assert.rejects(
      push({ image: 'acme/shop:v1', to: `${target.host}/mirror/x@sha256:${'0'.repeat(64)}` }),
      /the image's digest is sha256:/,
    );
  });
});

describe('image references and challenges', () => {
  test('parseImageReference', () => {
    assert.deepEqual(parseImageReference('127.0.0.1:5000/x/y:tag'), {
      host: '127.0.0.1:5000',
      repository: 'x/y',
      tag: 'tag',
      digest: undefined,
    });
    assert.deepEqual(parseImageReference(`ghcr.io/org/app@sha256:${'a'.repeat(64)}`), {
      host: 'ghcr.io',
      repository: 'org/app',
      tag: undefined,
      digest: `sha256:${'a'.repeat(64)}`,
    });
    assert.equal(parseImageReference('localhost/app').host, 'localhost');
    assert.equal(parseImageReference('team/app:v1').host, '');
    assert.throws(() => parseImageReference('host.io/UPPER/case'), /not a repository name/);
    assert.throws(() => parseImageReference('host.io/a/b:bad tag'), /not a valid tag/);
  });

  test('parseChallenge', () => {
    assert.deepEqual(
      parseChallenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"',
      ),
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:a/b:pull',
        },
      },
    );
    assert.deepEqual(parseChallenge('Basic realm="Valve Registry"'), {
      scheme: 'basic',
      params: { realm: 'Valve Registry' },
    });
    assert.equal(parseChallenge(null), null);
  });
});
