/**
 * The native builder on base images against real peers: CNCF Distribution (Debian's
 * docker-registry) holding the busybox test image, pushed there by skopeo, open and behind
 * htpasswd; the result served from Valve's registry with token auth, pulled and run by podman.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { ensureBusyboxImage } from '../../test/support/images.js';
import { Registry, mediaTypes } from '../registry/index.js';
import { build, buildImage } from './index.js';
import {
  installed,
  mustRun,
  podmanRun,
  serveRegistry,
  startDistribution,
  type RunningRegistry,
} from './registry-fixtures.js';

const needed = ['podman', 'skopeo', 'docker-registry', 'htpasswd'].filter(
  (tool) => !installed(tool, tool === 'htpasswd' ? ['-nbB', 'a', 'b'] : ['--version']),
);
const skip = (t: TestContext) => {
  if (needed.length) t.skip(`${needed.join(', ')} not installed (scripts/setup-podman.sh)`);
  return needed.length > 0;
};
const ALICE = { username: 'alice', password: 'token-of-alice' };
const PRIVATE = { username: 'carol', password: 'carols-password' };

interface ImageConfig {
  architecture: string;
  config: Record<string, unknown> & { Env?: string[]; Cmd?: string[] };
  rootfs: { diff_ids: string[] };
  history: { created_by?: string }[];
}

describe('native builds on a base image', () => {
  let root: string;
  let open: RunningRegistry;
  let guarded: RunningRegistry;
  let context: string;

  before(async () => {
    if (needed.length) return;
    root = await mkdtemp(path.join(os.tmpdir(), 'valve-base-image-'));
    const busybox = await ensureBusyboxImage();
    open = await startDistribution(path.join(root, 'open'));
    guarded = await startDistribution(path.join(root, 'guarded'), PRIVATE);
    await mustRun('skopeo', [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      `containers-storage:${busybox}`,
      `docker://${open.host}/base/busybox:1`,
    ]);
    // Docker schema 2 media types in the private one.
    await mustRun('skopeo', [
      'copy',
      '--quiet',
      '--format=v2s2',
      '--dest-tls-verify=false',
      '--dest-creds',
      `${PRIVATE.username}:${PRIVATE.password}`,
      `containers-storage:${busybox}`,
      `docker://${guarded.host}/private/busybox:1`,
    ]);
    context = path.join(root, 'context');
    await mkdir(path.join(context, 'bin'), { recursive: true });
    await writeFile(path.join(context, 'hello.txt'), 'hello from the app layer\n');
    await writeFile(path.join(context, 'bin', 'start'), '#!/bin/sh\ncat /app/hello.txt\n', {
      mode: 0o755,
    });
  });
  after(async () => {
    if (needed.length) return;
    await open?.stop();
    await guarded?.stop();
    await rm(root, { recursive: true, force: true });
  });

  const newRegistry = async () =>
    new Registry({ dataDir: await mkdtemp(path.join(root, 'valve-')) });

  async function readJson<T>(registry: Registry, digest: string): Promise<T> {
    const chunks: Buffer[] = [];
    for await (const chunk of (await registry.openBlob(digest))!) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
  }

  async function inspect(registry: Registry, repo: string, reference: string) {
    const manifest = (await registry.getManifest(repo, reference))!;
    const body = JSON.parse(manifest.body.toString('utf8')) as {
      mediaType: string;
      config: { digest: string };
      layers: { mediaType: string; digest: string }[];
    };
    return { manifest, body, config: await readJson<ImageConfig>(registry, body.config.digest) };
  }

  test('from another registry: base layers plus the app layer, pulled and run by podman with a token', async (t) => {
    if (skip(t)) return;
    const registry = await newRegistry();
    const progress: string[] = [];
    const built = await build({
      contextDir: context,
      base: `${open.host}/base/busybox:1`,
      config: { env: { GREETING: 'hi' }, labels: { 'org.example.app': 'hello' } },
      registry,
      repo: 'team-a/hello',
      tag: 'v1',
      onProgress: (line) => progress.push(line),
    });
    assert.equal(built.builder, 'native');
    assert.equal(built.layers, 2);
    assert.match(built.base!.digest, /^sha256:[a-f0-9]{64}$/);
    assert.ok(progress.some((line) => line.startsWith('copying layer 1/1')));

    const base = await inspect(registry, 'team-a/hello', built.base!.digest).catch(() => null);
    assert.equal(base, null, "the base's manifest itself is not stored, only its blobs");
    const { body, config } = await inspect(registry, 'team-a/hello', 'v1');
    assert.equal(body.mediaType, mediaTypes.ociManifest);
    assert.equal(config.rootfs.diff_ids.length, 2);
    // Env merged by key: the base's PATH, then the app's; Cmd from the base (busybox `sh`).
    assert.deepEqual(config.config.Env, ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'GREETING=hi']);
    assert.deepEqual(config.config.Cmd, ['sh']);
    assert.equal(config.config.WorkingDir, '/app');
    assert.deepEqual(config.history.at(-1), {
      created: '1970-01-01T00:00:00.000Z',
      created_by: 'valve build: copy context to /app',
    });

    const served = await serveRegistry(registry, ALICE);
    try {
      const output = await podmanRun(
        `${served.host}/team-a/hello:v1`,
        ['sh', '-c', 'cat /etc/valve-test-image; /app/bin/start; echo "$GREETING from $(pwd)"'],
        ALICE,
        `${served.host}/team-a/pushed:v1`,
      );
      assert.equal(
        output,
        'localhost/valve-test/busybox:1\nhello from the app layer\nhi from /app\n',
      );
      assert.ok(served.tokenRequests.some((request) => request.authorized));
      // podman pushed it back (with a token for push): the same config, so the same image.
      const pushed = await inspect(registry, 'team-a/pushed', 'v1');
      assert.equal(pushed.body.config.digest, body.config.digest);
      assert.ok(
        served.tokenRequests.some((request) => request.scope?.includes('team-a/pushed:pull,push')),
      );
    } finally {
      await served.stop();
    }
  });

  test('reproducible: the same base digest and inputs give the same digest', async (t) => {
    if (skip(t)) return;
    const options = {
      contextDir: context,
      config: { cmd: ['/app/bin/start'] },
      repo: 'team-a/hello',
      tag: 'v1',
    };
    const first = await buildImage({
      ...options,
      base: `${open.host}/base/busybox:1`,
      registry: await newRegistry(),
    });
    const second = await buildImage({
      ...options,
      base: `${open.host}/base/busybox@${first.base!.digest}`,
      registry: await newRegistry(),
    });
    assert.equal(second.digest, first.digest);
    const other = await buildImage({
      ...options,
      config: { cmd: ['sh'] },
      base: `${open.host}/base/busybox:1`,
      registry: await newRegistry(),
    });
    assert.notEqual(other.digest, first.digest);
  });

  test('from a private registry (htpasswd, Basic) with credentials, keeping Docker layer types', async (t) => {
    if (skip(t)) return;
    const registry = await newRegistry();
    await assert.rejects(
      buildImage({
        contextDir: context,
        base: `${guarded.host}/private/busybox:1`,
        registry,
        repo: 'team-a/private',
        tag: 'v1',
      }),
      new RegExp(`${guarded.host.replace(/\./g, '\\.')} needs a username and password to pull`),
    );
    await assert.rejects(
      buildImage({
        contextDir: context,
        base: `${guarded.host}/private/busybox:1`,
        baseCredentials: { ...PRIVATE, password: 'wrong' },
        registry,
        repo: 'team-a/private',
        tag: 'v1',
      }),
      /refused the credentials for private\/busybox: HTTP 401/,
    );
    const built = await buildImage({
      contextDir: context,
      base: `${guarded.host}/private/busybox:1`,
      baseCredentials: PRIVATE,
      config: { cmd: ['/app/bin/start'] },
      registry,
      repo: 'team-a/private',
      tag: 'v1',
    });
    const { body } = await inspect(registry, 'team-a/private', 'v1');
    assert.deepEqual(
      body.layers.map((layer) => layer.mediaType),
      ['application/vnd.docker.image.rootfs.diff.tar.gzip', mediaTypes.ociLayerGzip],
    );
    const served = await serveRegistry(registry);
    try {
      const output = await podmanRun(`${served.host}/team-a/private@${built.digest}`, []);
      assert.equal(output, 'hello from the app layer\n');
    } finally {
      await served.stop();
    }
  });

  test("from Valve's own registry, read directly: an image built on an image built on a base", async (t) => {
    if (skip(t)) return;
    const registry = await newRegistry();
    const lower = await buildImage({
      contextDir: context,
      base: `${open.host}/base/busybox:1`,
      workingDir: '/opt/lower',
      config: { env: { LEVEL: 'lower' }, cmd: ['cat', '/opt/lower/hello.txt'] },
      registry,
      repo: 'team-a/lower',
      tag: 'v1',
    });
    const upper = await buildImage({
      contextDir: context,
      base: 'team-a/lower:v1',
      config: { env: { LEVEL: 'upper', EXTRA: '1' } },
      registry,
      repo: 'team-a/upper',
      tag: 'v1',
      // Valve's own host in a reference is read locally too.
      localRegistryHost: 'valve.test:8443',
    });
    assert.deepEqual(upper.base, { reference: 'team-a/lower:v1', digest: lower.digest });
    assert.equal(upper.layers, 3);
    const { config } = await inspect(registry, 'team-a/upper', 'v1');
    assert.deepEqual(config.config.Env, [
      'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
      'LEVEL=upper',
      'EXTRA=1',
    ]);
    assert.deepEqual(config.config.Cmd, ['cat', '/opt/lower/hello.txt']);
    const viaHost = await buildImage({
      contextDir: context,
      base: `valve.test:8443/team-a/lower@${lower.digest}`,
      localRegistryHost: 'valve.test:8443',
      config: { env: { LEVEL: 'upper', EXTRA: '1' } },
      registry,
      repo: 'team-a/upper',
      tag: 'v2',
    });
    assert.equal(viaHost.digest, upper.digest);

    const served = await serveRegistry(registry);
    try {
      assert.equal(
        await podmanRun(`${served.host}/team-a/upper:v1`, []),
        'hello from the app layer\n',
      );
    } finally {
      await served.stop();
    }
    await assert.rejects(
      buildImage({
        contextDir: context,
        base: 'team-a/nothing:v1',
        registry,
        repo: 'team-a/x',
        tag: 'v1',
      }),
      /base image team-a\/nothing:v1 not found/,
    );
  });
});
