import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Command } from 'commander';
import Fastify, { type FastifyInstance } from 'fastify';
import { writeBusyboxRootfs } from '../../test/support/images.js';
import { registerImagesImport } from '../cli/commands/images-import.js';
import { replyWithError } from '../http/errors.js';
import { Registry, hostPlatform, mediaTypes } from '../registry/index.js';
import { buildImage, buildRoutes, importRootfs } from './index.js';
import { installed, podmanRun, serveRegistry } from './registry-fixtures.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const podman = installed('podman') && installed('/bin/busybox', ['true']);

async function readJson(registry: Registry, digest: string) {
  const chunks: Buffer[] = [];
  for await (const chunk of (await registry.openBlob(digest))!) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

describe('importRootfs', () => {
  let root: string;
  let tarball: string;
  let gzipped: string;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'valve-import-rootfs-'));
    tarball = path.join(root, 'rootfs.tar');
    await writeBusyboxRootfs(tarball, 'imported busybox');
    gzipped = path.join(root, 'rootfs.tar.gz');
    await writeFile(gzipped, gzipSync(await readFile(tarball), { level: 9 }));
  });
  after(() => rm(root, { recursive: true, force: true }));

  const newRegistry = async () =>
    new Registry({ dataDir: await mkdtemp(path.join(root, 'valve-')) });

  test('one reproducible layer whatever the compression; diff ID is the tar; default PATH', async () => {
    const registry = await newRegistry();
    const plain = await importRootfs({ tarball, registry, repo: 'team-a/busybox', tag: 'tar' });
    const fromGzip = await importRootfs({
      tarball: gzipped,
      registry: await newRegistry(),
      repo: 'team-a/busybox',
      tag: 'tar',
    });
    assert.equal(fromGzip.digest, plain.digest);
    assert.equal(plain.diffId, sha256(await readFile(tarball)));

    const manifest = JSON.parse(
      (await registry.getManifest('team-a/busybox', 'tar'))!.body.toString(),
    );
    assert.equal(manifest.mediaType, mediaTypes.ociManifest);
    assert.equal(manifest.layers.length, 1);
    assert.equal(manifest.layers[0].mediaType, mediaTypes.ociLayerGzip);
    const config = await readJson(registry, manifest.config.digest);
    assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [plain.diffId] });
    assert.equal(config.architecture, hostPlatform().architecture);
    assert.deepEqual(config.config, {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    });

    const configured = await importRootfs({
      tarball: Readable.from([await readFile(gzipped)]),
      registry,
      repo: 'team-a/busybox',
      tag: 'configured',
      config: { cmd: ['sh'], env: { PATH: '/bin', LANG: 'C' }, workingDir: '/root', user: '0' },
    });
    const second = await readJson(
      registry,
      JSON.parse((await registry.getManifest('team-a/busybox', configured.digest))!.body.toString())
        .config.digest,
    );
    assert.deepEqual(second.config, {
      User: '0',
      Env: ['PATH=/bin', 'LANG=C'],
      Cmd: ['sh'],
      WorkingDir: '/root',
    });
  });

  test('what is not a tar is refused and nothing is tagged', async () => {
    const registry = await newRegistry();
    const notTar = path.join(root, 'not.tar');
    await writeFile(notTar, 'just some text, not an archive\n'.repeat(100));
    for (const file of [notTar, path.join(root, 'empty.gz')]) {
      if (file.endsWith('.gz')) await writeFile(file, gzipSync(Buffer.alloc(0)));
      await assert.rejects(
        importRootfs({ tarball: file, registry, repo: 'team-a/bad', tag: 'v1' }),
        /tarball: not a tar archive/,
      );
    }
    await assert.rejects(
      importRootfs({
        tarball: path.join(root, 'missing.tar'),
        registry,
        repo: 'team-a/bad',
        tag: 'v1',
      }),
      /ENOENT/,
    );
    assert.deepEqual(await registry.listRepositories(), []);
  });

  test('an app built on the imported base runs in podman', async (t) => {
    if (!podman) return t.skip('podman or busybox-static not installed (scripts/setup-podman.sh)');
    const registry = await newRegistry();
    await importRootfs({ tarball: gzipped, registry, repo: 'team-a/busybox', tag: '1' });
    const context = path.join(root, 'context');
    await mkdir(context, { recursive: true });
    await writeFile(path.join(context, 'hello.txt'), 'app on an imported base\n');
    await buildImage({
      contextDir: context,
      base: 'team-a/busybox:1',
      config: { cmd: ['sh', '-c', 'cat /etc/valve-test-image /app/hello.txt'] },
      registry,
      repo: 'team-a/app',
      tag: 'v1',
    });
    const served = await serveRegistry(registry);
    try {
      assert.equal(
        await podmanRun(`${served.host}/team-a/app:v1`, []),
        'imported busybox\napp on an imported base\n',
      );
    } finally {
      await served.stop();
    }
  });
});

describe('POST /api/teams/:team/images/import and `valve images import`', () => {
  let root: string;
  let registry: Registry;
  let app: FastifyInstance;
  let server: string;
  let tarball: string;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'valve-import-api-'));
    registry = new Registry({ dataDir: path.join(root, 'data') });
    tarball = path.join(root, 'rootfs.tar');
    await writeBusyboxRootfs(tarball, 'via the api');
    app = Fastify({ bodyLimit: 1024 });
    app.setErrorHandler((error, request, reply) => replyWithError(error, request, reply));
    await app.register(
      buildRoutes({
        registry,
        authorizePush: async (request, repo) => {
          const auth = request.headers.authorization;
          if (!auth) return 'unauthenticated';
          return auth === 'Bearer alice-token' && repo.startsWith('team-a/') ? 'ok' : 'denied';
        },
      }),
    );
    await app.listen({ host: '127.0.0.1', port: 0 });
    server = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  after(async () => {
    await app.close();
    await rm(root, { recursive: true, force: true });
  });

  /** Runs `valve images import ...` as the CLI does, logged in with `token`. */
  async function cli(token: string, ...args: string[]): Promise<string> {
    const configFile = path.join(root, `cli-${token}.json`);
    await writeFile(configFile, JSON.stringify({ server, username: 'alice', token }));
    const saved = process.env.VALVE_CONFIG;
    process.env.VALVE_CONFIG = configFile;
    const printed: string[] = [];
    const log = console.log;
    console.log = (line: string) => printed.push(line);
    try {
      const program = new Command('valve').exitOverride();
      registerImagesImport(program);
      await program.parseAsync(['images', 'import', ...args], { from: 'user' });
    } finally {
      console.log = log;
      if (saved === undefined) delete process.env.VALVE_CONFIG;
      else process.env.VALVE_CONFIG = saved;
    }
    return printed.join('\n');
  }

  test('the CLI streams the tarball (past the JSON body limit) and the image is stored', async () => {
    const output = await cli(
      'alice-token',
      tarball,
      '--repo',
      'team-a/base',
      '--tag',
      '1',
      '--cmd',
      '["sh","-c","echo hi"]',
      '--env',
      'LANG=C',
    );
    const stored = await registry.getManifest('team-a/base', '1');
    assert.ok(stored);
    assert.match(output, new RegExp(`^imported team-a/base:1 \\(${stored.digest}, \\d+ bytes\\)$`));
    const config = await readJson(registry, JSON.parse(stored.body.toString()).config.digest);
    assert.deepEqual(config.config.Cmd, ['sh', '-c', 'echo hi']);
    assert.deepEqual(config.config.Env, [
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'LANG=C',
    ]);
    assert.equal(config.rootfs.diff_ids[0], sha256(await readFile(tarball)));
  });

  test('without credentials 401, without push access 403, bad input 400', async () => {
    const post = (query: string, headers: Record<string, string> = {}) =>
      app.inject({
        method: 'POST',
        url: `/api/teams/team-a/images/import?${query}`,
        headers: { 'content-type': 'application/x-tar', ...headers },
        payload: 'not a tar at all',
      });
    assert.equal((await post('name=base&tag=2')).statusCode, 401);
    await assert.rejects(
      cli('alice-token', tarball, '--repo', 'team-b/base', '--tag', '1'),
      /AUTH_FORBIDDEN: not allowed to push images to team-b\/base/,
    );
    const notTar = await post('name=base&tag=2', { authorization: 'Bearer alice-token' });
    assert.equal(notTar.statusCode, 400);
    assert.match(notTar.json().error.message, /tarball: not a tar archive/);
    const badQuery = await post('tag=2', { authorization: 'Bearer alice-token' });
    assert.equal(badQuery.statusCode, 400);
    assert.match(badQuery.json().error.message, /name: /);
    const badConfig = await post(`name=base&tag=2&config=${encodeURIComponent('{"cmd":"sh"}')}`, {
      authorization: 'Bearer alice-token',
    });
    assert.equal(badConfig.statusCode, 400);
    assert.match(badConfig.json().error.message, /config\.cmd/);
    assert.deepEqual(await registry.listTags('team-a/base'), ['1']);
  });
});
