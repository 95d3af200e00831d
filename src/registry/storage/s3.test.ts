import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import Fastify from 'fastify';
import { registryStorageFromEnv } from '../../config.js';
import { mediaTypes } from '../manifests.js';
import { Registry } from '../registry.js';
import { registryRoutes } from '../routes.js';
import { describeBlobStorageContract, sha256 } from './driver.case.test.js';
import { S3Storage } from './s3.js';

/**
 * The S3 driver against s3rver, a real S3-compatible server (HTTP, SigV4, multipart, ranges,
 * pagination), run as a child process on a free loopback port with its data in a temp dir. A
 * child, because s3rver's continuation tokens use DES, which Node 20's OpenSSL 3 offers only
 * with --openssl-legacy-provider.
 */
const BUCKET = 'valve-test';
const KEY = 'S3RVER'; // s3rver accepts this access key and secret, and checks signatures

const S3RVER_MAIN = createRequire(import.meta.url).resolve('s3rver');
const LAUNCHER = `
const S3rver = require(${JSON.stringify(S3RVER_MAIN)});
const [directory, bucket] = process.argv.slice(1);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory,
  configureBuckets: [{ name: bucket }] });
server.run().then(({ port }) => console.log(JSON.stringify({ port })));
process.stdin.on('end', () => process.exit(0)).resume();
`;

async function startS3Server() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'valve-s3rver-'));
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', '-e', LAUNCHER, dir, BUCKET],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = once(child, 'exit');
  const [line] = (await Promise.race([
    once(createInterface({ input: child.stdout! }), 'line'),
    exited.then(([code]) => {
      throw new Error(`s3rver exited with ${code}`);
    }),
  ])) as [string];
  const { port } = JSON.parse(line) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: KEY, secretAccessKey: KEY },
  });
  return {
    endpoint,
    /** Every key in the bucket. */
    async keys(): Promise<string[]> {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: BUCKET, ContinuationToken: token }),
        );
        keys.push(...(page.Contents ?? []).map((object) => object.Key!));
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys.sort();
    },
    async close() {
      client.destroy();
      child.stdin!.end();
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

type S3Server = Awaited<ReturnType<typeof startS3Server>>;

const storageOptions = (server: S3Server, stagingDir: string) => ({
  endpoint: server.endpoint,
  bucket: BUCKET,
  region: 'us-east-1',
  prefix: 'valve',
  accessKeyId: KEY,
  secretAccessKey: KEY,
  forcePathStyle: true,
  stagingDir,
});

describeBlobStorageContract('s3', async () => {
  const server = await startS3Server();
  const stagingDir = await mkdtemp(path.join(os.tmpdir(), 'valve-s3-staging-'));
  // Small parts and pages, so the multipart upload and list pagination really happen.
  const storage = new S3Storage({
    ...storageOptions(server, stagingDir),
    partSize: 5 * 1024 * 1024,
    listPageSize: 2,
  });
  return {
    storage,
    everything: async () => [
      ...(await server.keys()),
      ...(await readdir(stagingDir)).map((name) => `staging/${name}`),
    ],
    largeSize: 11 * 1024 * 1024 + 3,
    async cleanup() {
      await storage.close();
      await server.close();
      await rm(stagingDir, { recursive: true, force: true });
    },
  };
});

describe('s3 blob storage', () => {
  let server: S3Server;
  let dataDir: string;

  before(async () => {
    server = await startS3Server();
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-s3-registry-'));
  });
  after(async () => {
    await server?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keys blobs <prefix>/blobs/sha256/<2 hex>/<hex>', async () => {
    const storage = new S3Storage({
      ...storageOptions(server, path.join(dataDir, 'tmp')),
      prefix: '/layout/',
    });
    try {
      const { digest } = await storage.put(Buffer.from('layout'));
      const hex = digest.slice('sha256:'.length);
      assert.ok((await server.keys()).includes(`layout/blobs/sha256/${hex.slice(0, 2)}/${hex}`));
    } finally {
      await storage.close();
    }
  });

  it('runs a whole registry: push over HTTP, pull, collect garbage', async () => {
    const env = {
      VALVE_REGISTRY_STORAGE: 's3',
      VALVE_REGISTRY_S3_ENDPOINT: server.endpoint,
      VALVE_REGISTRY_S3_BUCKET: BUCKET,
      VALVE_REGISTRY_S3_PREFIX: 'registry',
      VALVE_REGISTRY_S3_ACCESS_KEY_ID: KEY,
      VALVE_REGISTRY_S3_SECRET_ACCESS_KEY: KEY,
    };
    const storage = registryStorageFromEnv(env);
    const registry = new Registry({ dataDir, storage });
    const app = Fastify();
    await app.register(
      registryRoutes(registry, { authenticated: async () => true, authorize: async () => 'ok' }),
    );
    try {
      const layer = Buffer.alloc(300_000, 'l');
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' }));
      // The layer in two chunks through an upload session, the config in one POST.
      const started = await app.inject({ method: 'POST', url: '/v2/team-a/app/blobs/uploads/' });
      assert.equal(started.statusCode, 202);
      const patched = await app.inject({
        method: 'PATCH',
        url: started.headers.location!,
        headers: { 'content-type': 'application/octet-stream', 'content-range': '0-99999' },
        payload: layer.subarray(0, 100_000),
      });
      assert.equal(patched.statusCode, 202);
      const closed = await app.inject({
        method: 'PUT',
        url: `${patched.headers.location}?digest=${sha256(layer)}`,
        headers: { 'content-type': 'application/octet-stream' },
        payload: layer.subarray(100_000),
      });
      assert.equal(closed.statusCode, 201, closed.body);
      const posted = await app.inject({
        method: 'POST',
        url: `/v2/team-a/app/blobs/uploads/?digest=${sha256(config)}`,
        headers: { 'content-type': 'application/octet-stream' },
        payload: config,
      });
      assert.equal(posted.statusCode, 201, posted.body);
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: mediaTypes.ociManifest,
          config: { mediaType: mediaTypes.ociConfig, digest: sha256(config), size: config.length },
          layers: [
            { mediaType: mediaTypes.ociLayerGzip, digest: sha256(layer), size: layer.length },
          ],
        }),
      );
      const pushed = await app.inject({
        method: 'PUT',
        url: '/v2/team-a/app/manifests/v1',
        headers: { 'content-type': mediaTypes.ociManifest },
        payload: manifest,
      });
      assert.equal(pushed.statusCode, 201, pushed.body);

      const pulled = await app.inject({ method: 'GET', url: '/v2/team-a/app/manifests/v1' });
      assert.equal(pulled.statusCode, 200);
      assert.deepEqual(pulled.rawPayload, manifest);
      const blob = await app.inject({
        method: 'GET',
        url: `/v2/team-a/app/blobs/${sha256(layer)}`,
      });
      assert.ok(blob.rawPayload.equals(layer));
      const range = await app.inject({
        method: 'GET',
        url: `/v2/team-a/app/blobs/${sha256(layer)}`,
        headers: { range: 'bytes=299990-' },
      });
      assert.equal(range.statusCode, 206);
      assert.ok(range.rawPayload.equals(layer.subarray(299_990)));

      // The bytes are in the bucket, none under the data dir; no upload or staging is left.
      const hexes = [layer, config, manifest].map((data) => sha256(data).slice(7));
      const keys = await server.keys();
      for (const hex of hexes) {
        assert.ok(keys.includes(`registry/blobs/sha256/${hex.slice(0, 2)}/${hex}`), hex);
      }
      assert.deepEqual(
        await readdir(dataDir, { recursive: true }).then((all) =>
          all.filter((f) => f.startsWith('registry/blobs')),
        ),
        [],
      );
      assert.deepEqual(await readdir(path.join(dataDir, 'registry', 'uploads')), []);
      assert.deepEqual(await readdir(path.join(dataDir, 'registry', 'tmp')), []);

      // Unreferenced, the image's blobs go from the bucket.
      assert.equal(await registry.deleteManifest('team-a/app', sha256(manifest)), true);
      const report = await registry.collectGarbage({ graceMs: 0 });
      assert.deepEqual(
        report.deletedBlobs.map((deleted) => deleted.digest).sort(),
        [layer, config, manifest].map(sha256).sort(),
      );
      assert.deepEqual(
        (await server.keys()).filter((key) => key.startsWith('registry/')),
        [],
      );
    } finally {
      await app.close();
    }
  });

  it('takes its settings from the environment, and keeps the secret out of logs', async () => {
    const env = {
      VALVE_REGISTRY_STORAGE: 's3',
      VALVE_REGISTRY_S3_ENDPOINT: server.endpoint,
      VALVE_REGISTRY_S3_BUCKET: BUCKET,
      VALVE_REGISTRY_S3_ACCESS_KEY_ID: KEY,
      VALVE_REGISTRY_S3_SECRET_ACCESS_KEY: 'never-logged-secret',
    };
    const config = registryStorageFromEnv(env);
    assert.deepEqual(JSON.parse(JSON.stringify(config)), {
      driver: 's3',
      endpoint: server.endpoint,
      bucket: BUCKET,
      region: 'us-east-1',
      prefix: '',
      accessKeyId: KEY,
      forcePathStyle: true,
    });
    assert.ok(!inspect(config, { depth: 5 }).includes('never-logged-secret'));
    // It reaches the driver all the same: without it the SDK would find no credentials at all.
    const registry = new Registry({ dataDir: path.join(dataDir, 'env'), storage: config });
    const stored = await registry.putBlob(Buffer.from('from env'));
    assert.equal((await registry.statBlob(stored.digest))?.size, 8);
    const stranger = registryStorageFromEnv({ ...env, VALVE_REGISTRY_S3_ACCESS_KEY_ID: 'nobody' });
    await assert.rejects(
      new Registry({ dataDir: path.join(dataDir, 'stranger'), storage: stranger }).putBlob(
        Buffer.from('x'),
      ),
      (error: { $metadata?: { httpStatusCode?: number } }) =>
        error.$metadata?.httpStatusCode === 403,
    );

    assert.deepEqual(registryStorageFromEnv({}), { driver: 'filesystem' });
    assert.throws(() => registryStorageFromEnv({ VALVE_REGISTRY_STORAGE: 's3' }), /BUCKET/);
    assert.throws(() => registryStorageFromEnv({ VALVE_REGISTRY_STORAGE: 'gcs' }), /filesystem/);
    const aws = registryStorageFromEnv({
      VALVE_REGISTRY_STORAGE: 's3',
      VALVE_REGISTRY_S3_BUCKET: 'b',
    });
    assert.deepEqual(aws, {
      driver: 's3',
      bucket: 'b',
      region: 'us-east-1',
      prefix: '',
      forcePathStyle: false,
    });
  });
});
