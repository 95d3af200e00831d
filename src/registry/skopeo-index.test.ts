/**
 * A multi-arch image index through a real client: `skopeo copy --all` pushes an OCI layout
 * with an index of two platform images in, and pulls it back out byte for byte.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { mediaTypes } from './manifests.js';
import { sha256, startTestRegistry, type TestRegistry } from './testing.js';

const SKOPEO = spawnSync('skopeo', ['--version']).status === 0;
const CREDS = 'alice:secret-token';
const run = promisify(execFile);

let root: string;
let r: TestRegistry;
let host: string;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'valve-skopeo-index-'));
  r = await startTestRegistry();
  host = await r.listen();
});
after(async () => {
  await r.close();
  if (!process.env.KEEP) await rm(root, { recursive: true, force: true });
});

async function skopeo(...args: string[]): Promise<string> {
  const { stdout } = await run('skopeo', ['--policy', path.join(root, 'policy.json'), ...args], {
    env: { ...process.env, HOME: path.join(root, 'home') },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

/** Writes an OCI image layout holding an index of a linux/amd64 and a linux/arm64 image. */
async function writeMultiArchLayout(dir: string): Promise<string> {
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (data: Buffer) => {
    const digest = sha256(data);
    await writeFile(path.join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), data);
    return { digest, size: data.length };
  };
  const manifests = [];
  for (const architecture of ['amd64', 'arm64']) {
    const files = path.join(root, `files-${architecture}`);
    await mkdir(files, { recursive: true });
    await writeFile(path.join(files, 'arch.txt'), `${architecture}\n`);
    const tarball = path.join(root, `${architecture}.tar`);
    await run('tar', ['--numeric-owner', '--mtime=@0', '-C', files, '-cf', tarball, 'arch.txt']);
    const tar = await readFile(tarball);
    // Gzipped: skopeo compresses an uncompressed layer on its way to a registry, which would
    // change the manifests' digests.
    const layer = await put(gzipSync(tar, { level: 6 }));
    const diffId = sha256(tar);
    const config = await put(
      Buffer.from(
        JSON.stringify({
          architecture,
          os: 'linux',
          config: { Cmd: ['cat', '/arch.txt'] },
          rootfs: { type: 'layers', diff_ids: [diffId] },
        }),
      ),
    );
    const manifest = await put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: mediaTypes.ociManifest,
          config: { mediaType: mediaTypes.ociConfig, ...config },
          layers: [{ mediaType: mediaTypes.ociLayerGzip, ...layer }],
        }),
      ),
    );
    manifests.push({
      mediaType: mediaTypes.ociManifest,
      ...manifest,
      platform: { architecture, os: 'linux' },
    });
  }
  const index = await put(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests })),
  );
  await writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: mediaTypes.ociIndex,
          ...index,
          annotations: { 'org.opencontainers.image.ref.name': 'multi' },
        },
      ],
    }),
  );
  return index.digest;
}

test(
  'skopeo copies a multi-arch index in and out unchanged',
  { skip: !SKOPEO && 'skopeo is not installed' },
  async () => {
    await mkdir(path.join(root, 'home'));
    await writeFile(
      path.join(root, 'policy.json'),
      JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }),
    );
    const source = path.join(root, 'source');
    const indexDigest = await writeMultiArchLayout(source);

    await skopeo(
      'copy',
      '--all',
      '--dest-tls-verify=false',
      '--dest-creds',
      CREDS,
      `oci:${source}:multi`,
      `docker://${host}/team-a/multi:v1`,
    );
    const stored = await r.registry.getManifest('team-a/multi', 'v1');
    assert.equal(stored?.digest, indexDigest);
    assert.equal(stored?.mediaType, mediaTypes.ociIndex);

    const raw = JSON.parse(
      await skopeo(
        'inspect',
        '--raw',
        '--tls-verify=false',
        '--creds',
        CREDS,
        `docker://${host}/team-a/multi:v1`,
      ),
    );
    assert.deepEqual(
      raw.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture),
      ['amd64', 'arm64'],
    );
    const arm = JSON.parse(
      await skopeo(
        '--override-arch',
        'arm64',
        '--override-os',
        'linux',
        'inspect',
        '--tls-verify=false',
        '--creds',
        CREDS,
        `docker://${host}/team-a/multi:v1`,
      ),
    );
    assert.equal(arm.Architecture, 'arm64');

    const out = path.join(root, 'out');
    await skopeo(
      'copy',
      '--all',
      '--src-tls-verify=false',
      '--src-creds',
      CREDS,
      `docker://${host}/team-a/multi:v1`,
      `oci:${out}:copied`,
    );
    const outIndex = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8'));
    assert.equal(outIndex.manifests[0].digest, indexDigest);
    for (const child of raw.manifests as { digest: string }[]) {
      const hex = child.digest.slice('sha256:'.length);
      assert.deepEqual(
        await readFile(path.join(out, 'blobs', 'sha256', hex)),
        await readFile(path.join(source, 'blobs', 'sha256', hex)),
      );
    }
  },
);
