/**
 * A registry behind its HTTP routes in one fastify instance, for tests that speak the API with
 * `inject`: user `alice` (Basic `alice:secret-token`) may pull and push `team-a/*`, nothing else.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyRequest, type LightMyRequestResponse } from 'fastify';
import { mediaTypes } from './manifests.js';
import { Registry } from './registry.js';
import { registryRoutes, type PushedManifest } from './routes.js';

export const sha256 = (data: Buffer | string) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

export const ALICE = `Basic ${Buffer.from('alice:secret-token').toString('base64')}`;
export const aliceAuth = { authorization: ALICE };

export function errorCode(response: LightMyRequestResponse): string {
  return (response.json() as { errors: { code: string }[] }).errors[0]!.code;
}

export async function startTestRegistry(options: { manifestBodyLimit?: number } = {}) {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-registry-test-'));
  const registry = new Registry({ dataDir });
  const pushed: PushedManifest[] = [];
  const app = Fastify();
  const caller = (request: FastifyRequest) =>
    request.headers.authorization === ALICE ? 'alice' : null;
  await app.register(
    registryRoutes(registry, {
      authenticated: async (request) => caller(request) !== null,
      authorize: async (request, repo) => {
        if (!caller(request)) return 'unauthenticated';
        return repo.startsWith('team-a/') ? 'ok' : 'denied';
      },
      onManifestPushed: async (_request, manifest) => {
        pushed.push(manifest);
      },
      manifestBodyLimit: options.manifestBodyLimit ?? 64 * 1024,
    }),
  );

  async function uploadBlob(repo: string, blob: Buffer) {
    const response = await app.inject({
      method: 'POST',
      url: `/v2/${repo}/blobs/uploads/?digest=${sha256(blob)}`,
      headers: { ...aliceAuth, 'content-type': 'application/octet-stream' },
      payload: blob,
    });
    assert.equal(response.statusCode, 201, response.body);
  }

  /** Pushes `manifest` as `reference`, or by its own digest when `reference` is null. */
  async function putManifest(
    repo: string,
    reference: string | null,
    manifest: object,
    type?: string,
  ) {
    const body = Buffer.from(JSON.stringify(manifest));
    const response = await app.inject({
      method: 'PUT',
      url: `/v2/${repo}/manifests/${reference ?? sha256(body)}`,
      headers: { ...aliceAuth, 'content-type': type ?? mediaTypes.ociManifest },
      payload: body,
    });
    return { response, digest: sha256(body), size: body.length };
  }

  /** Pushes a one-layer image (distinct per `seed`) and returns its manifest's digest. */
  async function pushImage(repo: string, tag: string, seed = 'layer') {
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const layer = Buffer.from(`pretend this is a tar.gz: ${seed}`);
    for (const blob of [config, layer]) await uploadBlob(repo, blob);
    const { response, digest, size } = await putManifest(repo, tag, {
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config: { mediaType: mediaTypes.ociConfig, digest: sha256(config), size: config.length },
      layers: [{ mediaType: mediaTypes.ociLayerGzip, digest: sha256(layer), size: layer.length }],
    });
    assert.equal(response.statusCode, 201, response.body);
    return { digest, size };
  }

  /**
   * Every stored file except upload sessions and temp files, with a hash of its content: two
   * equal snapshots mean nothing visible changed.
   */
  async function snapshot(): Promise<Record<string, string>> {
    const root = path.join(dataDir, 'registry');
    const files: Record<string, string> = {};
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        const relative = path.relative(root, full);
        if (relative === 'uploads' || relative === 'tmp') continue;
        if (entry.isDirectory()) await walk(full);
        else files[relative] = sha256(await readFile(full));
      }
    };
    await walk(root);
    return files;
  }

  return {
    app,
    registry,
    /** Listens on 127.0.0.1 for real clients; returns `host:port`. */
    async listen(): Promise<string> {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      assert.ok(address && typeof address === 'object');
      return `127.0.0.1:${address.port}`;
    },
    dataDir,
    pushed,
    uploadBlob,
    putManifest,
    pushImage,
    snapshot,
    async close() {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export type TestRegistry = Awaited<ReturnType<typeof startTestRegistry>>;
