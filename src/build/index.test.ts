import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { ValveError } from '../errors.js';
import { Registry, mediaTypes } from '../registry/index.js';
import { hostPlatform } from '../registry/index.js';
import { buildImage, type BuildImageOptions } from './index.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname: string | null;
  content: string;
}

async function readBlob(registry: Registry, digest: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of (await registry.openBlob(digest))!) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function untar(tarball: Buffer): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const extract = tar.extract();
  Readable.from([tarball]).pipe(extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    const { header } = entry;
    entries.push({
      name: header.name,
      type: header.type,
      mode: header.mode,
      uid: header.uid,
      gid: header.gid,
      mtime: header.mtime.getTime(),
      linkname: header.linkname || null,
      content: Buffer.concat(chunks).toString('utf8'),
    });
  }
  return entries;
}

/** A small app tree; `variant` changes file timestamps and creation order, not content. */
async function writeContext(dir: string, variant: 'a' | 'b') {
  const files: Array<[string, string]> = [
    ['server.js', 'console.log("hi");\n'],
    ['lib/util.js', 'export const x = 1;\n'],
    ['bin/start', '#!/bin/sh\nexec node server.js\n'],
    ['.git/HEAD', 'ref: refs/heads/main\n'],
    ['node_modules/dep/index.js', 'module.exports = 1;\n'],
    ['lib/node_modules/nested.js', '1;\n'],
  ];
  for (const [file, content] of variant === 'a' ? files : [...files].reverse()) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), content);
  }
  await chmod(path.join(dir, 'bin/start'), variant === 'a' ? 0o755 : 0o700);
  await chmod(path.join(dir, 'server.js'), variant === 'a' ? 0o644 : 0o600);
  await symlink('server.js', path.join(dir, 'main.js'));
  const when = variant === 'a' ? new Date('2001-02-03T04:05:06Z') : new Date();
  for (const [file] of files) await utimes(path.join(dir, file), when, when);
}

describe('buildImage', () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'valve-build-'));
  });
  afterEach(async () => {
    delete process.env.SOURCE_DATE_EPOCH;
    await rm(root, { recursive: true, force: true });
  });

  async function build(name: string, variant: 'a' | 'b', extra: Partial<BuildImageOptions> = {}) {
    const contextDir = path.join(root, `context-${name}`);
    await writeContext(contextDir, variant);
    const registry = new Registry({ dataDir: path.join(root, `data-${name}`) });
    const result = await buildImage({
      contextDir,
      exclude: ['.git', 'node_modules'],
      config: {
        entrypoint: ['node'],
        cmd: ['server.js'],
        env: { NODE_ENV: 'production', PORT: '3000' },
        exposedPorts: [3000],
        user: '1000',
        labels: { 'org.opencontainers.image.title': 'hello' },
      },
      registry,
      repo: 'team-a/hello',
      tag: 'v1',
      ...extra,
    });
    return { registry, result };
  }

  test('the same tree gives the same digest, whatever its timestamps, modes or order', async () => {
    const first = await build('one', 'a');
    const second = await build('two', 'b', {
      // The same settings written in another order.
      config: {
        labels: { 'org.opencontainers.image.title': 'hello' },
        user: '1000',
        exposedPorts: [3000],
        env: { PORT: '3000', NODE_ENV: 'production' },
        cmd: ['server.js'],
        entrypoint: ['node'],
      },
    });
    assert.equal(first.result.digest, second.result.digest);
    assert.equal(first.result.reference, `team-a/hello@${first.result.digest}`);
    assert.equal(first.result.layers, 1);

    const third = await build('three', 'a', { config: { cmd: ['node', 'other.js'] } });
    assert.notEqual(third.result.digest, first.result.digest);
  });

  test('writes an OCI manifest, a config with diff IDs, and a reproducible layer under /app', async () => {
    const { registry, result } = await build('one', 'a');
    const manifest = await registry.getManifest('team-a/hello', 'v1');
    assert.ok(manifest);
    assert.equal(manifest.digest, result.digest);
    assert.equal(manifest.mediaType, mediaTypes.ociManifest);
    const body = JSON.parse(manifest.body.toString('utf8'));
    assert.equal(body.schemaVersion, 2);
    assert.equal(body.layers.length, 1);
    assert.equal(body.layers[0].mediaType, mediaTypes.ociLayerGzip);
    const layerDescriptor = body.layers[0] as { digest: string; size: number };
    assert.equal(result.size, manifest.body.length + body.config.size + layerDescriptor.size);

    const compressed = await readBlob(registry, layerDescriptor.digest);
    assert.equal(compressed.readUInt32LE(4), 0, 'gzip header carries no timestamp');
    const tarball = gunzipSync(compressed);

    const config = JSON.parse((await readBlob(registry, body.config.digest)).toString('utf8'));
    assert.equal(config.architecture, hostPlatform().architecture);
    assert.equal(config.os, hostPlatform().os);
    assert.equal(config.created, '1970-01-01T00:00:00.000Z');
    assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [sha256(tarball)] });
    assert.deepEqual(config.config, {
      User: '1000',
      ExposedPorts: { '3000/tcp': {} },
      Env: ['NODE_ENV=production', 'PORT=3000'],
      Entrypoint: ['node'],
      Cmd: ['server.js'],
      WorkingDir: '/app',
      Labels: { 'org.opencontainers.image.title': 'hello' },
    });

    const entries = await untar(tarball);
    assert.deepEqual(
      entries.map((entry) => [entry.name, entry.type, entry.mode.toString(8), entry.linkname]),
      [
        ['app/', 'directory', '755', null],
        ['app/bin/', 'directory', '755', null],
        ['app/bin/start', 'file', '755', null],
        ['app/lib/', 'directory', '755', null],
        ['app/lib/util.js', 'file', '644', null],
        ['app/main.js', 'symlink', '777', 'server.js'],
        ['app/server.js', 'file', '644', null],
      ],
    );
    for (const entry of entries) {
      assert.equal(entry.uid, 0);
      assert.equal(entry.gid, 0);
      assert.equal(entry.mtime, 0);
    }
    assert.equal(
      entries.find((entry) => entry.name === 'app/server.js')?.content,
      'console.log("hi");\n',
    );
  });

  test('honours workingDir, the default exclude, and SOURCE_DATE_EPOCH', async () => {
    process.env.SOURCE_DATE_EPOCH = '1700000000';
    const { registry, result } = await build('one', 'a', {
      workingDir: '/srv/app/',
      exclude: undefined,
    });
    const body = JSON.parse(
      (await registry.getManifest('team-a/hello', result.digest))!.body.toString('utf8'),
    );
    const config = JSON.parse((await readBlob(registry, body.config.digest)).toString('utf8'));
    assert.equal(config.config.WorkingDir, '/srv/app');
    assert.equal(config.created, '2023-11-14T22:13:20.000Z');

    const entries = await untar(gunzipSync(await readBlob(registry, body.layers[0].digest)));
    const names = entries.map((entry) => entry.name);
    assert.deepEqual(names.slice(0, 2), ['srv/', 'srv/app/']);
    assert.ok(
      names.includes('srv/app/node_modules/dep/index.js'),
      'node_modules is kept unless excluded',
    );
    assert.ok(!names.some((name) => name.includes('.git')), '.git is excluded by default');
    for (const entry of entries) assert.equal(entry.mtime, 1700000000 * 1000);
  });

  test('rejects bad options before writing anything', async () => {
    const contextDir = path.join(root, 'context');
    await mkdir(contextDir);
    const registry = new Registry({ dataDir: path.join(root, 'data') });
    const options = { contextDir, config: {}, registry, repo: 'team-a/hello', tag: 'v1' };
    await assert.rejects(buildImage({ ...options, workingDir: 'app' }), ValveError);
    await assert.rejects(
      buildImage({ ...options, config: { exposedPorts: [70000] } }),
      /exposedPorts/,
    );
    await assert.rejects(buildImage({ ...options, config: { env: { 'A=B': 'x' } } }), /env/);
    await assert.rejects(
      buildImage({ ...options, contextDir: path.join(root, 'missing') }),
      /not a directory/,
    );
    await assert.rejects(buildImage({ ...options, repo: 'Team/Hello' }), /invalid repository name/);
    assert.deepEqual(await registry.listRepositories(), []);
  });
});
