/**
 * Every bad request the issue names gets the spec's error code and status, and leaves what is
 * stored exactly as it was (compared file by file, with content hashes).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { mediaTypes } from './manifests.js';
import { aliceAuth, errorCode, sha256, startTestRegistry, type TestRegistry } from './testing.js';

describe('registry bad paths leave the stored state unchanged', () => {
  let r: TestRegistry;
  let before: Record<string, string>;

  beforeEach(async () => {
    r = await startTestRegistry({ manifestBodyLimit: 64 * 1024 });
    await r.pushImage('team-a/app', 'v1');
    before = await r.snapshot();
  });
  afterEach(() => r.close());

  async function assertUnchanged() {
    assert.deepEqual(await r.snapshot(), before);
    const pulled = await r.app.inject({
      method: 'GET',
      url: '/v2/team-a/app/manifests/v1',
      headers: aliceAuth,
    });
    assert.equal(pulled.statusCode, 200);
  }

  async function startUpload() {
    const started = await r.app.inject({
      method: 'POST',
      url: '/v2/team-a/app/blobs/uploads/',
      headers: aliceAuth,
    });
    assert.equal(started.statusCode, 202);
    return started.headers.location as string;
  }

  const patch = (location: string, range: string, payload: Buffer) =>
    r.app.inject({
      method: 'PATCH',
      url: location,
      headers: {
        ...aliceAuth,
        'content-type': 'application/octet-stream',
        'content-range': range,
      },
      payload,
    });

  test('a monolithic upload whose digest is wrong: 400 DIGEST_INVALID', async () => {
    const response = await r.app.inject({
      method: 'POST',
      url: `/v2/team-a/app/blobs/uploads/?digest=${sha256('claimed')}`,
      headers: { ...aliceAuth, 'content-type': 'application/octet-stream' },
      payload: Buffer.from('actual bytes'),
    });
    assert.equal(response.statusCode, 400);
    assert.equal(errorCode(response), 'DIGEST_INVALID');
    await assertUnchanged();
  });

  test('a truncated chunk: 400 SIZE_INVALID, and the session stays where it was', async () => {
    const location = await startUpload();
    assert.equal((await patch(location, '0-4', Buffer.from('01234'))).statusCode, 202);
    // Content-Range announces 10 bytes, 3 arrive.
    const short = await patch(location, '5-14', Buffer.from('567'));
    assert.equal(short.statusCode, 400);
    assert.equal(errorCode(short), 'SIZE_INVALID');
    const status = await r.app.inject({ method: 'GET', url: location, headers: aliceAuth });
    assert.equal(status.headers.range, '0-4');

    // Closing a session that is missing its tail: the digest of the whole never matches.
    const close = await r.app.inject({
      method: 'PUT',
      url: `${location}?digest=${sha256('0123456789')}`,
      headers: aliceAuth,
    });
    assert.equal(close.statusCode, 400);
    assert.equal(errorCode(close), 'DIGEST_INVALID');
    await assertUnchanged();
  });

  test('an out-of-order chunk: 416 with the Range the upload has', async () => {
    const location = await startUpload();
    assert.equal((await patch(location, '0-3', Buffer.from('0123'))).statusCode, 202);
    for (const range of ['8-9', '2-5', '0-3']) {
      const response = await patch(location, range, Buffer.from('abcd').subarray(0, 2));
      assert.equal(response.statusCode, 416, range);
      assert.equal(errorCode(response), 'BLOB_UPLOAD_INVALID');
      assert.equal(response.headers.range, '0-3');
    }
    const garbled = await patch(location, 'bytes=lots', Buffer.from('x'));
    assert.equal(garbled.statusCode, 400);
    assert.equal(errorCode(garbled), 'BLOB_UPLOAD_INVALID');
    await assertUnchanged();
  });

  test('a manifest that references a missing blob: 400 MANIFEST_BLOB_UNKNOWN', async () => {
    const config = Buffer.from('{"os":"linux"}');
    await r.uploadBlob('team-a/app', config);
    before = await r.snapshot();
    const missing = sha256('never uploaded');
    const { response } = await r.putManifest('team-a/app', 'v1', {
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, digest: sha256(config), size: config.length },
      layers: [{ mediaType: mediaTypes.ociLayerGzip, digest: missing, size: 14 }],
    });
    assert.equal(response.statusCode, 400);
    assert.equal(errorCode(response), 'MANIFEST_BLOB_UNKNOWN');
    assert.ok(response.body.includes(missing));
    await assertUnchanged();
  });

  test('an unknown manifest media type: 400 MANIFEST_INVALID naming the type', async () => {
    const { response } = await r.putManifest(
      'team-a/app',
      'v1',
      { schemaVersion: 2, layers: [] },
      'application/vnd.example.unknown+json',
    );
    assert.equal(response.statusCode, 400);
    assert.equal(errorCode(response), 'MANIFEST_INVALID');
    assert.match(response.body, /application\/vnd\.example\.unknown\+json/);
    await assertUnchanged();
  });

  test('a malformed JSON body: 400 MANIFEST_INVALID', async () => {
    for (const payload of [
      '{"schemaVersion": 2, "config": ',
      'null',
      '[]',
      '{"schemaVersion":"2"}',
    ]) {
      const response = await r.app.inject({
        method: 'PUT',
        url: '/v2/team-a/app/manifests/v1',
        headers: { ...aliceAuth, 'content-type': mediaTypes.ociManifest },
        payload,
      });
      assert.equal(response.statusCode, 400, payload);
      assert.equal(errorCode(response), 'MANIFEST_INVALID', payload);
    }
    await assertUnchanged();
  });

  test('a huge manifest body: 413 SIZE_INVALID, whether announced or streamed', async () => {
    const huge = Buffer.alloc(64 * 1024 + 1, 0x20);
    const announced = await r.app.inject({
      method: 'PUT',
      url: '/v2/team-a/app/manifests/v1',
      headers: { ...aliceAuth, 'content-type': mediaTypes.ociManifest },
      payload: huge,
    });
    assert.equal(announced.statusCode, 413);
    assert.equal(errorCode(announced), 'SIZE_INVALID');

    const { Readable } = await import('node:stream');
    const streamed = await r.app.inject({
      method: 'PUT',
      url: '/v2/team-a/app/manifests/v1',
      headers: {
        ...aliceAuth,
        'content-type': mediaTypes.ociManifest,
        'transfer-encoding': 'chunked',
      },
      payload: Readable.from([huge.subarray(0, 40_000), huge.subarray(40_000)]),
    });
    assert.equal(streamed.statusCode, 413);
    assert.equal(errorCode(streamed), 'SIZE_INVALID');
    await assertUnchanged();
  });

  test('a manifest pushed by a digest that is not its own: 400 DIGEST_INVALID', async () => {
    const { response } = await r.putManifest(
      'team-a/app',
      sha256('something else'),
      {
        schemaVersion: 2,
        mediaType: mediaTypes.ociIndex,
        manifests: [],
      },
      mediaTypes.ociIndex,
    );
    assert.equal(response.statusCode, 400);
    assert.equal(errorCode(response), 'DIGEST_INVALID');
    await assertUnchanged();
  });
});
