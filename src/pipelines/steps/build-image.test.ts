import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, before, describe, test, type TestContext } from 'node:test';
import { busyboxImage, ensureBusyboxImage } from '../../../test/support/images.js';
import { buildImage } from '../../build/index.js';
import { installed, podmanRun, serveRegistry } from '../../build/registry-fixtures.js';
import { Registry } from '../../registry/index.js';
import { describeZodErrorPlain } from '../describe.js';
import { buildImageStep, parseBuildArgs } from './build-image.js';
import { stepFixture, type StepFixture } from './step-fixture.js';

const VALVE_HOST = 'valve.test:8443';
const BOB = { username: 'bob', password: 'hunter2' };
const CONTAINERS = installed('podman') && installed('buildah');

const fixtures: StepFixture[] = [];
const dataDirs: string[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.cleanup();
  for (const dir of dataDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function setup(files: Record<string, string>) {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-build-step-'));
  dataDirs.push(dataDir);
  const registry = new Registry({ dataDir });
  const fixture = await stepFixture({ services: { registry, registryHost: () => VALVE_HOST } });
  fixtures.push(fixture);
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(fixture.context.workspace, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
  const run = (raw: Record<string, string>) =>
    buildImageStep.run(fixture.context, buildImageStep.inputs.parse(raw));
  const config = async (reference: string) => {
    const manifest = JSON.parse(
      (await registry.getManifest('acme/shop', reference))!.body.toString('utf8'),
    );
    const chunks: Buffer[] = [];
    for await (const chunk of (await registry.openBlob(manifest.config.digest))!) {
      chunks.push(chunk as Buffer);
    }
    return { manifest, config: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
  };
  return { fixture, registry, run, config };
}

describe('valve/build-image', () => {
  before(async () => {
    if (CONTAINERS) await ensureBusyboxImage();
  });

  test('without the new inputs: the native builder, as before', async () => {
    const { run, config, fixture } = await setup({ 'server.js': 'console.log(1);\n' });
    const outputs = await run({});
    const tag = fixture.context.run.commit.slice(0, 12);
    assert.deepEqual(outputs, {
      image: `${VALVE_HOST}/acme/shop@${outputs.digest}`,
      digest: outputs.digest,
      tag,
    });
    const { manifest, config: image } = await config(tag);
    assert.equal(manifest.layers.length, 1);
    assert.equal(image.config.WorkingDir, '/app');
    assert.equal(
      image.config.Labels['org.opencontainers.image.revision'],
      fixture.context.run.commit,
    );
    assert.match(fixture.logs.at(-1)!, /native builder\)$/);
  });

  test('with a dockerfile and build-args: buildah builds it, podman runs it', async (t: TestContext) => {
    if (!CONTAINERS)
      return t.skip('podman and buildah are not installed (scripts/setup-podman.sh)');
    const { run, config, registry, fixture } = await setup({
      'docker/Dockerfile': `FROM ${busyboxImage}
ARG GREETING
ARG WHO=nobody
COPY app/hello.txt /srv/hello.txt
RUN echo "$GREETING, $WHO" > /srv/run.txt
ENV MODE=step
EXPOSE 9000
CMD ["sh", "-c", "cat /srv/run.txt /srv/hello.txt; echo $MODE"]
`,
      'app/hello.txt': 'copied by the step\n',
    });
    const outputs = await run({
      dockerfile: 'docker/Dockerfile',
      'build-args': 'GREETING=hello there\n# a comment\n\nWHO=step = test\n',
      tag: 'v1',
    });
    assert.equal(outputs.tag, 'v1');
    const { config: image } = await config('v1');
    assert.equal(
      image.config.Labels['org.opencontainers.image.revision'],
      fixture.context.run.commit,
    );
    assert.deepEqual(image.config.ExposedPorts, { '9000/tcp': {} });
    assert.ok(fixture.logs.some((line) => /^STEP \d+\/\d+: RUN echo/.test(line)));
    assert.match(fixture.logs.at(-1)!, /dockerfile builder\)$/);

    const served = await serveRegistry(registry);
    try {
      assert.equal(
        await podmanRun(`${served.host}/acme/shop@${outputs.digest}`, []),
        'hello there, step = test\ncopied by the step\nstep\n',
      );
    } finally {
      await served.stop();
    }
  });

  test('base: an image of the team in Valve, or a private one elsewhere with credentials', async () => {
    const { run, config, registry } = await setup({ 'server.js': 'console.log(2);\n' });
    const context = path.join(path.dirname(registry.root), 'base-context');
    await mkdir(context, { recursive: true });
    await writeFile(path.join(context, 'lib.js'), 'exports.x = 1;\n');
    const lower = await buildImage({
      contextDir: context,
      workingDir: '/opt/lib',
      config: { env: { FROM_BASE: '1' } },
      registry,
      repo: 'acme/base',
      tag: '1',
    });
    const local = await run({ base: `${VALVE_HOST}/acme/base:1`, tag: 'local' });
    const { manifest, config: image } = await config('local');
    assert.equal(manifest.layers.length, 2);
    assert.ok(image.config.Env.includes('FROM_BASE=1'));
    await assert.rejects(
      run({ base: 'other/base:1' }),
      /with\.base: other\/base is not a repository of team acme/,
    );

    // The same base served by another registry that wants a token for bob's credentials.
    const remote = await serveRegistry(registry, BOB);
    try {
      await assert.rejects(run({ base: `${remote.host}/acme/base:1`, tag: 'remote' }), /HTTP 401/);
      const outputs = await run({
        base: `${remote.host}/acme/base@${lower.digest}`,
        'registry-username': BOB.username,
        'registry-password': BOB.password,
        tag: 'remote',
      });
      assert.equal(outputs.digest, local.digest, 'the same base and context, the same image');
    } finally {
      await remote.stop();
    }
  });

  test('inputs are checked before anything is built, naming the input', async () => {
    const { run, fixture } = await setup({ Dockerfile: 'FROM scratch\n' });
    const problem = (raw: Record<string, string>) => {
      const parsed = buildImageStep.inputs.safeParse(raw);
      assert.equal(parsed.success, false);
      return describeZodErrorPlain(parsed.error!, 'with');
    };
    assert.match(
      problem({ 'build-args': 'A=1' }),
      /with\.build-args: build arguments need a dockerfile/,
    );
    assert.match(
      problem({ 'registry-password': 'x' }),
      /with\.registry-username: a password needs a username/,
    );
    assert.match(problem({ dockerfile: 'Dockerfile', exclude: 'tmp' }), /with\.exclude: /);
    await assert.rejects(
      run({ dockerfile: '../Dockerfile' }),
      /with\.dockerfile: "\.\.\/Dockerfile" is outside the workspace/,
    );
    await symlink('/etc/hostname', path.join(fixture.context.workspace, 'escape'));
    await assert.rejects(
      run({ dockerfile: 'escape' }),
      /with\.dockerfile: "escape" reaches out of the workspace/,
    );
    await assert.rejects(
      run({ base: 'Bad/Ref' }),
      /with\.base: "Bad\/Ref" has an invalid repository name/,
    );
  });

  test('parseBuildArgs', () => {
    assert.deepEqual(parseBuildArgs('A=1\r\n\n# c\nB= spaced =x \nC=\n'), {
      A: '1',
      B: ' spaced =x ',
      C: '',
    });
    assert.throws(
      () => parseBuildArgs('A=1\nnot a pair\n'),
      /with\.build-args: line 2 is not KEY=VALUE/,
    );
  });
});
