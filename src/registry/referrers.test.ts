import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { mediaTypes } from './manifests.js';
import { aliceAuth, errorCode, sha256, startTestRegistry, type TestRegistry } from './testing.js';

const EMPTY = Buffer.from('{}');
const emptyDescriptor = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: sha256(EMPTY),
  size: EMPTY.length,
};

describe('referrers API and catalog', () => {
  let r: TestRegistry;

  beforeEach(async () => {
    r = await startTestRegistry();
  });
  afterEach(() => r.close());

  /** An artifact (a signature, an SBOM) whose subject is `subject`. */
  async function pushArtifact(subject: { digest: string; size: number }, artifactType: string) {
    await r.uploadBlob('team-a/app', EMPTY);
    const payload = Buffer.from(`${artifactType} payload`);
    await r.uploadBlob('team-a/app', payload);
    // Pushed by digest, as clients push referrers.
    return r.putManifest('team-a/app', null, {
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      artifactType,
      config: emptyDescriptor,
      layers: [
        { mediaType: 'application/octet-stream', digest: sha256(payload), size: payload.length },
      ],
      subject: { mediaType: mediaTypes.ociManifest, ...subject },
      annotations: { 'org.example.kind': artifactType },
    });
  }

  async function referrersOf(digest: string, query = '') {
    return r.app.inject({
      method: 'GET',
      url: `/v2/team-a/app/referrers/${digest}${query}`,
      headers: aliceAuth,
    });
  }

  test('lists the manifests whose subject is a digest, filtered by artifactType', async () => {
    const image = await r.pushImage('team-a/app', 'v1');
    const empty = await referrersOf(image.digest);
    assert.equal(empty.statusCode, 200);
    assert.equal(empty.headers['content-type'], mediaTypes.ociIndex);
    assert.deepEqual(empty.json(), {
      schemaVersion: 2,
      mediaType: mediaTypes.ociIndex,
      manifests: [],
    });

    const signature = await pushArtifact(image, 'application/vnd.example.signature');
    assert.equal(signature.response.statusCode, 201, signature.response.body);
    assert.equal(signature.response.headers['oci-subject'], image.digest);
    const sbom = await pushArtifact(image, 'application/spdx+json');
    assert.equal(sbom.response.statusCode, 201);

    const all = (await referrersOf(image.digest)).json() as { manifests: { digest: string }[] };
    assert.deepEqual(
      all.manifests.map((m) => m.digest).sort(),
      [signature.digest, sbom.digest].sort(),
    );

    const filtered = await referrersOf(
      image.digest,
      `?artifactType=${encodeURIComponent('application/spdx+json')}`,
    );
    assert.equal(filtered.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual((filtered.json() as { manifests: unknown[] }).manifests, [
      {
        mediaType: mediaTypes.ociManifest,
        digest: sbom.digest,
        size: sbom.size,
        artifactType: 'application/spdx+json',
        annotations: { 'org.example.kind': 'application/spdx+json' },
      },
    ]);

    // Deleting a referrer takes it off the list.
    const deleted = await r.app.inject({
      method: 'DELETE',
      url: `/v2/team-a/app/manifests/${sbom.digest}`,
      headers: aliceAuth,
    });
    assert.equal(deleted.statusCode, 202);
    const after = (await referrersOf(image.digest)).json() as { manifests: { digest: string }[] };
    assert.deepEqual(
      after.manifests.map((m) => m.digest),
      [signature.digest],
    );
  });

  test('a subject that is not pushed yet lists its referrers; a bad digest is 400', async () => {
    const future = { digest: sha256('an image pushed later'), size: 123 };
    const pushed = await pushArtifact(future, 'application/vnd.example.signature');
    assert.equal(pushed.response.statusCode, 201, pushed.response.body);
    const listed = (await referrersOf(future.digest)).json() as { manifests: { digest: string }[] };
    assert.deepEqual(
      listed.manifests.map((m) => m.digest),
      [pushed.digest],
    );

    const bad = await referrersOf('sha256:nothex');
    assert.equal(bad.statusCode, 400);
    assert.equal(errorCode(bad), 'DIGEST_INVALID');
  });

  test("another team's referrers look like a missing repository", async () => {
    const response = await r.app.inject({
      method: 'GET',
      url: `/v2/team-b/app/referrers/${sha256('x')}`,
      headers: aliceAuth,
    });
    assert.equal(response.statusCode, 404);
    assert.equal(errorCode(response), 'NAME_UNKNOWN');
  });

  test('the catalog lists only repositories the caller may pull, a page at a time', async () => {
    for (const repo of ['team-a/one', 'team-a/three', 'team-a/two', 'team-b/secret']) {
      await r.registry.putBlob(Buffer.from(repo));
      await r.registry.linkBlob(repo, sha256(repo));
    }
    const anonymous = await r.app.inject({ method: 'GET', url: '/v2/_catalog' });
    assert.equal(anonymous.statusCode, 401);

    const all = await r.app.inject({ method: 'GET', url: '/v2/_catalog', headers: aliceAuth });
    assert.equal(all.statusCode, 200);
    assert.deepEqual(all.json(), { repositories: ['team-a/one', 'team-a/three', 'team-a/two'] });

    const first = await r.app.inject({
      method: 'GET',
      url: '/v2/_catalog?n=2',
      headers: aliceAuth,
    });
    assert.deepEqual(first.json(), { repositories: ['team-a/one', 'team-a/three'] });
    assert.equal(first.headers.link, '</v2/_catalog?n=2&last=team-a%2Fthree>; rel="next"');
    const second = await r.app.inject({
      method: 'GET',
      url: '/v2/_catalog?n=2&last=team-a%2Fthree',
      headers: aliceAuth,
    });
    assert.deepEqual(second.json(), { repositories: ['team-a/two'] });
    assert.equal(second.headers.link, undefined);
  });

  test('a pushed manifest is reported with its tags, for the push log', async () => {
    const image = await r.pushImage('team-a/app', 'v1');
    assert.deepEqual(r.pushed, [
      {
        repo: 'team-a/app',
        digest: image.digest,
        mediaType: mediaTypes.ociManifest,
        size: image.size,
        tags: ['v1'],
      },
    ]);
  });
});
