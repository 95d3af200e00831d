/**
 * The Dockerfile builder with the real buildah (and podman build): FROM the local busybox test
 * image, COPY, RUN, ENV, EXPOSE, CMD; the result loaded into Valve's registry, then pulled
 * with a token and run by podman.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { busyboxImage, ensureBusyboxImage, writeBusyboxRootfs } from '../../test/support/images.js';
import { Registry } from '../registry/index.js';
import { build, importRootfs } from './index.js';
import { buildDockerfile, findBuildTool } from './dockerfile.js';
import { installed, mustRun, podmanRun, serveRegistry } from './registry-fixtures.js';

const BUILDAH = installed('buildah');
const PODMAN = installed('podman');
const ALICE = { username: 'alice', password: 'token-of-alice' };

const DOCKERFILE = `FROM ${busyboxImage}
ARG GREETING=unset
COPY hello.txt /srv/hello.txt
RUN echo "made by RUN with $GREETING" > /srv/run.txt
ENV APP_MODE=test
EXPOSE 8080
WORKDIR /srv
CMD ["sh", "-c", "cat run.txt hello.txt; echo $APP_MODE"]
`;

describe('the Dockerfile builder', () => {
  let root: string;
  let context: string;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'valve-dockerfile-test-'));
    context = path.join(root, 'context');
    await mkdir(context);
    await writeFile(path.join(context, 'hello.txt'), 'hello from COPY\n');
    await writeFile(path.join(context, 'Dockerfile'), DOCKERFILE);
    if (PODMAN) await ensureBusyboxImage();
  });
  after(() => rm(root, { recursive: true, force: true }));

  const newRegistry = async () =>
    new Registry({ dataDir: await mkdtemp(path.join(root, 'valve-')) });
  const skip = (t: TestContext, tool: 'buildah' | 'podman') => {
    const missing = !PODMAN || (tool === 'buildah' && !BUILDAH);
    if (missing) t.skip(`${tool} is not installed (scripts/setup-podman.sh)`);
    return missing;
  };

  async function readJson(registry: Registry, digest: string) {
    const chunks: Buffer[] = [];
    for await (const chunk of (await registry.openBlob(digest))!) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  }

  /** Names of local images the builder made (its temporary tags start with valve-build/). */
  async function leftovers(): Promise<string[]> {
    const listed = JSON.parse(await mustRun('podman', ['images', '--format', 'json'])) as {
      Names?: string[];
    }[];
    return listed
      .flatMap((image) => image.Names ?? [])
      .filter((name) => name.includes('valve-build/') || name.includes('valve-dockerfile-'));
  }

  test('buildah: COPY, RUN, ENV, EXPOSE, CMD; podman pulls it with a token and runs it', async (t) => {
    if (skip(t, 'buildah')) return;
    const registry = await newRegistry();
    const progress: string[] = [];
    const built = await build({
      contextDir: context,
      dockerfile: 'Dockerfile',
      buildArgs: { GREETING: 'build-arg' },
      config: { labels: { 'org.opencontainers.image.revision': 'abc123' } },
      registry,
      repo: 'team-a/docker',
      tag: 'v1',
      onProgress: (line) => progress.push(line),
    });
    assert.equal(built.builder, 'dockerfile');
    assert.ok(
      progress.some((line) => /^STEP 4\/\d+: RUN echo/.test(line)),
      progress.join('\n'),
    );
    assert.deepEqual(await leftovers(), []);

    const manifest = JSON.parse(
      (await registry.getManifest('team-a/docker', 'v1'))!.body.toString('utf8'),
    );
    assert.equal(manifest.layers.length, built.layers);
    assert.ok(built.layers >= 2, 'the base layer and at least one more');
    const config = await readJson(registry, manifest.config.digest);
    assert.ok(config.config.Env.includes('APP_MODE=test'));
    assert.deepEqual(config.config.ExposedPorts, { '8080/tcp': {} });
    assert.equal(config.config.WorkingDir, '/srv');
    assert.equal(config.config.Labels['org.opencontainers.image.revision'], 'abc123');
    assert.equal(config.created, '1970-01-01T00:00:00Z');

    const served = await serveRegistry(registry, ALICE);
    try {
      assert.equal(
        await podmanRun(
          `${served.host}/team-a/docker:v1`,
          [],
          ALICE,
          `${served.host}/team-a/pushed:v1`,
        ),
        'made by RUN with build-arg\nhello from COPY\ntest\n',
      );
      const pushed = JSON.parse(
        (await registry.getManifest('team-a/pushed', 'v1'))!.body.toString('utf8'),
      );
      assert.equal(pushed.config.digest, manifest.config.digest);
    } finally {
      await served.stop();
    }
  });

  test('reproducible with the same inputs; podman build gives the same image', async (t) => {
    if (skip(t, 'buildah')) return;
    const options = {
      contextDir: context,
      dockerfile: path.join(context, 'Dockerfile'),
      buildArgs: { GREETING: 'again' },
      repo: 'team-a/docker',
      tag: 'v2',
    };
    const first = await buildDockerfile({ ...options, registry: await newRegistry() });
    const second = await buildDockerfile({ ...options, registry: await newRegistry() });
    assert.equal(second.digest, first.digest);
    const withPodman = await buildDockerfile({
      ...options,
      registry: await newRegistry(),
      tool: 'podman',
    } as Parameters<typeof buildDockerfile>[0]);
    assert.equal(withPodman.digest, first.digest);
    assert.deepEqual(await leftovers(), []);
  });

  test("`base` replaces FROM: an imported rootfs from Valve's registry", async (t) => {
    if (skip(t, 'buildah')) return;
    const registry = await newRegistry();
    const tarball = path.join(root, 'rootfs.tar');
    await writeBusyboxRootfs(tarball, 'imported for a Dockerfile');
    const base = await importRootfs({ tarball, registry, repo: 'team-a/rootfs', tag: '1' });
    const dir = path.join(root, 'from-base');
    await mkdir(dir);
    await writeFile(
      path.join(dir, 'Containerfile'),
      'FROM scratch\nRUN echo "RUN on the base" > /run.txt\nCMD ["cat", "/etc/valve-test-image", "/run.txt"]\n',
    );
    const built = await build({
      contextDir: dir,
      dockerfile: 'Containerfile',
      base: 'team-a/rootfs:1',
      registry,
      repo: 'team-a/on-base',
      tag: 'v1',
    });
    assert.deepEqual(built.base, { reference: 'team-a/rootfs:1', digest: base.digest });
    assert.deepEqual(await leftovers(), []);
    const served = await serveRegistry(registry);
    try {
      assert.equal(
        await podmanRun(`${served.host}/team-a/on-base:v1`, []),
        'imported for a Dockerfile\nRUN on the base\n',
      );
    } finally {
      await served.stop();
    }
  });

  test('a failing RUN fails the build with its output and leaves nothing behind', async (t) => {
    if (skip(t, 'buildah')) return;
    const dir = path.join(root, 'failing');
    await mkdir(dir);
    await writeFile(
      path.join(dir, 'Dockerfile'),
      `FROM ${busyboxImage}\nRUN echo "about to fail" && exit 3\n`,
    );
    const registry = await newRegistry();
    await assert.rejects(
      build({ contextDir: dir, dockerfile: 'Dockerfile', registry, repo: 'team-a/x', tag: 'v1' }),
      /buildah bud failed \(exit \d+\):[\s\S]*about to fail/,
    );
    assert.deepEqual(await leftovers(), []);
    assert.deepEqual(await registry.listRepositories(), []);
  });

  test('options it cannot honour, and no buildah or podman, are refused naming the parameter', async () => {
    const registry = await newRegistry();
    const common = { contextDir: context, registry, repo: 'team-a/x', tag: 'v1' };
    await assert.rejects(build({ ...common, buildArgs: { A: '1' } }), /^ValveError: buildArgs: /);
    await assert.rejects(
      build({ ...common, dockerfile: 'Dockerfile', workingDir: '/app' }),
      /^ValveError: workingDir: /,
    );
    await assert.rejects(
      build({ ...common, dockerfile: 'Dockerfile', config: { cmd: ['sh'] } }),
      /^ValveError: config\.cmd: a Dockerfile build takes/,
    );
    await assert.rejects(
      build({ ...common, dockerfile: 'Dockerfile', buildArgs: { 'NOT VALID': '1' } }),
      BUILDAH || PODMAN ? /buildArgs: "NOT VALID" is not a build argument name/ : /dockerfile: /,
    );
    await assert.rejects(
      build({ ...common, dockerfile: 'missing/Dockerfile' }),
      BUILDAH || PODMAN ? /dockerfile: missing\/Dockerfile is not a file/ : /dockerfile: /,
    );

    assert.equal(await findBuildTool({ PATH: path.join(root, 'no-such-dir') }), null);
    const savedPath = process.env.PATH;
    process.env.PATH = path.join(root, 'no-such-dir');
    try {
      await assert.rejects(
        build({ ...common, dockerfile: 'Dockerfile' }),
        /^ValveError: dockerfile: building from a Dockerfile needs buildah or podman on the server, and neither is installed/,
      );
    } finally {
      process.env.PATH = savedPath;
    }
  });
});
