import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import Fastify, {
  type FastifyInstance,
  type FastifyRequest,
  type LightMyRequestResponse,
} from 'fastify';
import { Registry, mediaTypes, registryRoutes } from './index.js';

const sha256 = (data: Buffer | string) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;
const ALICE = `Basic ${Buffer.from('alice:secret-token').toString('base64')}`;
const auth = { authorization: ALICE };

function caller(request: FastifyRequest) {
  return request.headers.authorization === ALICE ? 'alice' : null;
}

function errorCode(response: LightMyRequestResponse): string {
  return (response.json() as { errors: { code: string }[] }).errors[0]!.code;
}

describe('registry HTTP API', () => {
  let dataDir: string;
  let registry: Registry;
  let app: FastifyInstance;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-registry-http-'));
    registry = new Registry({ dataDir });
    app = Fastify();
    // A sibling JSON route: the registry's raw body parsing must not leak out of its scope.
    app.post('/api/echo', async (request) => request.body);
    await app.register(
      registryRoutes(registry, {
        authenticated: async (request) => caller(request) !== null,
        authorize: async (request, repo) => {
          if (!caller(request)) return 'unauthenticated';
          return repo.startsWith('team-a/') ? 'ok' : 'denied';
        },
        manifestBodyLimit: 64 * 1024,
      }),
    );
  });
  afterEach(async () => {
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  async function pushImage(repo: string, tag: string) {
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const layer = Buffer.from('pretend this is a tar.gz');
    for (const blob of [config, layer]) {
      const response = await app.inject({
        method: 'POST',
        url: `/v2/${repo}/blobs/uploads/?digest=${sha256(blob)}`,
        headers: { ...auth, 'content-type': 'application/octet-stream' },
        payload: blob,
      });
      assert.equal(response.statusCode, 201, response.body);
    }
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: mediaTypes.ociManifest,
        config: { mediaType: mediaTypes.ociConfig, digest: sha256(config), size: config.length },
        layers: [{ mediaType: mediaTypes.ociLayerGzip, digest: sha256(layer), size: layer.length }],
      }),
    );
    const response = await app.inject({
      method: 'PUT',
      url: `/v2/${repo}/manifests/${tag}`,
      headers: { ...auth, 'content-type': mediaTypes.ociManifest },
      payload: manifest,
    });
    assert.equal(response.statusCode, 201, response.body);
    return { manifest, digest: sha256(manifest), layer };
  }

  test('GET /v2/ asks for Basic credentials, then answers 200', async () => {
    const anonymous = await app.inject({ method: 'GET', url: '/v2/' });
    assert.equal(anonymous.statusCode, 401);
    assert.equal(anonymous.headers['www-authenticate'], 'Basic realm="Valve Registry"');
    assert.equal(anonymous.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.equal(errorCode(anonymous), 'UNAUTHORIZED');

    const alice = await app.inject({ method: 'GET', url: '/v2/', headers: auth });
    assert.equal(alice.statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/v2', headers: auth })).statusCode, 200);
    assert.equal(alice.headers['docker-distribution-api-version'], 'registry/2.0');
  });

  test('chunked upload: session, ordered chunks, 416, status, digest check, then the blob', async () => {
    const blob = Buffer.from('0123456789');
    const started = await app.inject({
      method: 'POST',
      url: '/v2/team-a/app/blobs/uploads/',
      headers: auth,
    });
    assert.equal(started.statusCode, 202);
    const location = started.headers.location as string;
    assert.match(location, /^\/v2\/team-a\/app\/blobs\/uploads\/[0-9a-f-]{36}$/);
    assert.equal(started.headers['docker-upload-uuid'], location.split('/').pop());
    assert.equal(started.headers.range, '0-0');

    const chunk = (range: string, payload: Buffer) =>
      app.inject({
        method: 'PATCH',
        url: location,
        headers: { ...auth, 'content-type': 'application/octet-stream', 'content-range': range },
        payload,
      });
    const first = await chunk('0-3', blob.subarray(0, 4));
    assert.equal(first.statusCode, 202);
    assert.equal(first.headers.range, '0-3');
    assert.equal(first.headers.location, location);

    const outOfOrder = await chunk('6-7', blob.subarray(6, 8));
    assert.equal(outOfOrder.statusCode, 416);
    assert.equal(errorCode(outOfOrder), 'BLOB_UPLOAD_INVALID');
    assert.equal(outOfOrder.headers.range, '0-3');

    const status = await app.inject({ method: 'GET', url: location, headers: auth });
    assert.equal(status.statusCode, 204);
    assert.equal(status.headers.range, '0-3');

    const wrong = await app.inject({
      method: 'PUT',
      url: `${location}?digest=${sha256('nope')}`,
      headers: auth,
    });
    assert.equal(wrong.statusCode, 400);
    assert.equal(errorCode(wrong), 'DIGEST_INVALID');
    assert.equal(await registry.hasBlob(sha256('nope')), false);

    const done = await app.inject({
      method: 'PUT',
      url: `${location}?digest=${sha256(blob)}`,
      headers: { ...auth, 'content-type': 'application/octet-stream', 'content-range': '4-9' },
      payload: blob.subarray(4),
    });
    assert.equal(done.statusCode, 201, done.body);
    assert.equal(done.headers.location, `/v2/team-a/app/blobs/${sha256(blob)}`);
    assert.equal(done.headers['docker-content-digest'], sha256(blob));

    const head = await app.inject({
      method: 'HEAD',
      url: done.headers.location as string,
      headers: auth,
    });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['content-length'], '10');
    assert.equal(head.headers['docker-content-digest'], sha256(blob));

    const part = await app.inject({
      method: 'GET',
      url: done.headers.location as string,
      headers: { ...auth, range: 'bytes=2-5' },
    });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers['content-range'], 'bytes 2-5/10');
    assert.equal(part.body, '2345');
    const outside = await app.inject({
      method: 'GET',
      url: done.headers.location as string,
      headers: { ...auth, range: 'bytes=10-' },
    });
    assert.equal(outside.statusCode, 416);
    assert.equal(outside.headers['content-range'], 'bytes */10');

    const gone = await app.inject({ method: 'GET', url: location, headers: auth });
    assert.equal(gone.statusCode, 404);
    assert.equal(errorCode(gone), 'BLOB_UPLOAD_UNKNOWN');
  });

  test('a monolithic upload with the wrong digest stores nothing', async () => {
    const response = await app.inject({
      method: 'POST',
      url: `/v2/team-a/app/blobs/uploads/?digest=${sha256('claimed')}`,
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      payload: Buffer.from('actual'),
    });
    assert.equal(response.statusCode, 400);
    assert.equal(errorCode(response), 'DIGEST_INVALID');
    assert.equal(await registry.hasBlob(sha256('actual')), false);
  });

  test('manifests: push, pull with the right headers and bytes, errors, delete', async () => {
    const { manifest, digest, layer } = await pushImage('team-a/app', 'v1');

    for (const reference of ['v1', digest]) {
      const pulled = await app.inject({
        method: 'GET',
        url: `/v2/team-a/app/manifests/${reference}`,
        headers: auth,
      });
      assert.equal(pulled.statusCode, 200);
      assert.equal(pulled.headers['content-type'], mediaTypes.ociManifest);
      assert.equal(pulled.headers['docker-content-digest'], digest);
      assert.deepEqual(pulled.rawPayload, manifest);
    }
    const head = await app.inject({
      method: 'HEAD',
      url: '/v2/team-a/app/manifests/v1',
      headers: auth,
    });
    assert.equal(head.headers['content-length'], String(manifest.length));

    const put = (url: string, payload: Buffer | string, type: string = mediaTypes.ociManifest) =>
      app.inject({ method: 'PUT', url, headers: { ...auth, 'content-type': type }, payload });
    const withTags = await put(
      `/v2/team-a/app/manifests/${digest}?tag=stable&tag=latest`,
      manifest,
    );
    assert.equal(withTags.statusCode, 201);
    assert.equal(withTags.headers['oci-tag'], 'stable, latest');
    assert.equal(withTags.headers.location, `/v2/team-a/app/manifests/${digest}`);

    const missingBlob = JSON.stringify({
      schemaVersion: 2,
      config: { mediaType: mediaTypes.ociConfig, digest: sha256('no such config'), size: 14 },
      layers: [],
    });
    const unknown = await put('/v2/team-a/app/manifests/v2', missingBlob);
    assert.equal(unknown.statusCode, 400);
    assert.equal(errorCode(unknown), 'MANIFEST_BLOB_UNKNOWN');
    assert.equal(errorCode(await put('/v2/team-a/app/manifests/v2', '{oops')), 'MANIFEST_INVALID');
    const tooLarge = await put('/v2/team-a/app/manifests/v2', Buffer.alloc(64 * 1024 + 1, 0x20));
    assert.equal(tooLarge.statusCode, 413);
    assert.equal(errorCode(tooLarge), 'SIZE_INVALID');

    // A layer of team-a/app is not pushable into team-a/other by digest alone...
    const layerOnly = JSON.stringify({
      schemaVersion: 2,
      config: { mediaType: mediaTypes.ociLayerGzip, digest: sha256(layer), size: layer.length },
      layers: [],
    });
    assert.equal(
      errorCode(await put('/v2/team-a/other/manifests/v1', layerOnly)),
      'MANIFEST_BLOB_UNKNOWN',
    );
    // ...but it is after a cross-repository mount from a repository the caller can pull.
    const mount = await app.inject({
      method: 'POST',
      url: `/v2/team-a/other/blobs/uploads/?mount=${sha256(layer)}&from=team-a/app`,
      headers: auth,
    });
    assert.equal(mount.statusCode, 201);
    assert.equal((await put('/v2/team-a/other/manifests/v1', layerOnly)).statusCode, 201);

    const untag = await app.inject({
      method: 'DELETE',
      url: '/v2/team-a/app/manifests/stable',
      headers: auth,
    });
    assert.equal(untag.statusCode, 202);
    const removed = await app.inject({
      method: 'DELETE',
      url: `/v2/team-a/app/manifests/${digest}`,
      headers: auth,
    });
    assert.equal(removed.statusCode, 202);
    const after = await app.inject({
      method: 'GET',
      url: '/v2/team-a/app/manifests/v1',
      headers: auth,
    });
    assert.equal(after.statusCode, 404);
    assert.equal(errorCode(after), 'MANIFEST_UNKNOWN');
  });

  test('tags list: ASCII order, n and last, Link to the next page', async () => {
    await pushImage('team-a/app', 'v1');
    for (const tag of ['b', 'a', 'c']) {
      const { body } = await app.inject({
        method: 'GET',
        url: '/v2/team-a/app/manifests/v1',
        headers: auth,
      });
      await app.inject({
        method: 'PUT',
        url: `/v2/team-a/app/manifests/${tag}`,
        headers: { ...auth, 'content-type': mediaTypes.ociManifest },
        payload: body,
      });
    }
    const all = await app.inject({ method: 'GET', url: '/v2/team-a/app/tags/list', headers: auth });
    assert.deepEqual(all.json(), { name: 'team-a/app', tags: ['a', 'b', 'c', 'v1'] });
    assert.equal(all.headers.link, undefined);

    const first = await app.inject({
      method: 'GET',
      url: '/v2/team-a/app/tags/list?n=2',
      headers: auth,
    });
    assert.deepEqual(first.json().tags, ['a', 'b']);
    assert.equal(first.headers.link, '</v2/team-a/app/tags/list?n=2&last=b>; rel="next"');
    const second = await app.inject({
      method: 'GET',
      url: '/v2/team-a/app/tags/list?n=2&last=b',
      headers: auth,
    });
    assert.deepEqual(second.json().tags, ['c', 'v1']);
    assert.equal(second.headers.link, undefined);
    const none = await app.inject({
      method: 'GET',
      url: '/v2/team-a/app/tags/list?n=0',
      headers: auth,
    });
    assert.deepEqual(none.json().tags, []);
    assert.equal(none.headers.link, undefined);

    const missing = await app.inject({
      method: 'GET',
      url: '/v2/team-a/nothing/tags/list',
      headers: auth,
    });
    assert.equal(missing.statusCode, 404);
    assert.equal(errorCode(missing), 'NAME_UNKNOWN');
  });

  test("another team's repository: pull looks like a missing one, push is denied", async () => {
    await pushImage('team-a/app', 'v1');
    // Let team-b/app exist, as another team's pushes would have made it.
    await registry.putRepositoryBlob('team-b/app', Buffer.from('b'), sha256('b'));

    for (const repo of ['team-b/app', 'team-b/does-not-exist']) {
      const pull = await app.inject({ method: 'GET', url: `/v2/${repo}/tags/list`, headers: auth });
      assert.equal(pull.statusCode, 404);
      assert.equal(errorCode(pull), 'NAME_UNKNOWN');
      const push = await app.inject({
        method: 'POST',
        url: `/v2/${repo}/blobs/uploads/`,
        headers: auth,
      });
      assert.equal(push.statusCode, 403);
      assert.equal(errorCode(push), 'DENIED');
    }
    // Mounting from a repository the caller cannot pull starts a normal upload instead.
    const mount = await app.inject({
      method: 'POST',
      url: `/v2/team-a/app/blobs/uploads/?mount=${sha256('b')}&from=team-b/app`,
      headers: auth,
    });
    assert.equal(mount.statusCode, 202);
    assert.equal(await registry.statRepositoryBlob('team-a/app', sha256('b')), null);

    const anonymous = await app.inject({ method: 'GET', url: '/v2/team-a/app/manifests/v1' });
    assert.equal(anonymous.statusCode, 401);
    assert.equal(anonymous.headers['www-authenticate'], 'Basic realm="Valve Registry"');
  });

  test('bad names, unknown endpoints and methods get spec errors', async () => {
    const badName = await app.inject({
      method: 'GET',
      url: '/v2/Team-A/App/tags/list',
      headers: auth,
    });
    assert.equal(badName.statusCode, 400);
    assert.equal(errorCode(badName), 'NAME_INVALID');
    const badDigest = await app.inject({
      method: 'GET',
      url: '/v2/team-a/app/blobs/sha256:xyz',
      headers: auth,
    });
    assert.equal(errorCode(badDigest), 'DIGEST_INVALID');
    const nowhere = await app.inject({
      method: 'GET',
      url: '/v2/team-a/app/nowhere',
      headers: auth,
    });
    assert.equal(nowhere.statusCode, 404);
    const method = await app.inject({
      method: 'DELETE',
      url: `/v2/team-a/app/blobs/${sha256('x')}`,
      headers: auth,
    });
    assert.equal(method.statusCode, 405);
    assert.equal(errorCode(method), 'UNSUPPORTED');
    assert.equal(method.headers.allow, 'GET, HEAD');
  });

  test('JSON routes outside the plugin keep their body parsing', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/api/echo',
      payload: { hello: 'world' },
    });
    assert.deepEqual(response.json(), { hello: 'world' });
  });
});
