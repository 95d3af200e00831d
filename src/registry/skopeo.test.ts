/**
 * The registry against a real client: images built by `buildImage` are inspected, pulled and
 * pushed back by skopeo over HTTP on loopback, with Basic auth and team isolation.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { buildImage } from '../build/index.js';
import { hostPlatform } from './platform.js';
import { Registry, registryRoutes } from './index.js';

/** skopeo on PATH, or undefined: the tests then skip. */
const SKOPEO = spawnSync('skopeo', ['--version']).status === 0 ? 'skopeo' : undefined;
const CREDS = 'alice:secret-token';

function basicCredentials(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (!header?.startsWith('Basic ')) return null;
  return Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('registry with skopeo', () => {
  let root: string;
  let app: FastifyInstance;
  let registry: Registry;
  let host: string;
  let built: Awaited<ReturnType<typeof buildImage>>;

  /** Runs skopeo with its own HOME, so no user config, credentials or blob cache leaks in. */
  const skopeo = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        SKOPEO!,
        args,
        { env: { ...process.env, HOME: path.join(root, 'home') }, maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  const ok = async (...args: string[]) => {
    const run = await skopeo(...args);
    assert.equal(run.code, 0, `skopeo ${args.join(' ')} failed:\n${run.stderr}`);
    return run.stdout;
  };
  const policy = () => path.join(root, 'policy.json');
  const skipWithoutSkopeo = (t: TestContext) => {
    if (!SKOPEO) t.skip('skopeo is not installed');
    return !SKOPEO;
  };

  before(async () => {
    if (!SKOPEO) return;
    root = await mkdtemp(path.join(os.tmpdir(), 'valve-skopeo-'));
    await mkdir(path.join(root, 'home'));
    await writeFile(policy(), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    registry = new Registry({ dataDir: path.join(root, 'data') });
    app = Fastify();
    await app.register(
      registryRoutes(registry, {
        authenticated: async (request) => basicCredentials(request) === CREDS,
        authorize: async (request, repo) => {
          if (basicCredentials(request) !== CREDS) return 'unauthenticated';
          return repo.startsWith('team-a/') ? 'ok' : 'denied';
        },
      }),
    );
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    assert.ok(address && typeof address === 'object');
    host = `127.0.0.1:${address.port}`;

    const context = path.join(root, 'context');
    await mkdir(path.join(context, 'lib'), { recursive: true });
    await writeFile(path.join(context, 'server.js'), 'console.log("hello from valve");\n');
    await writeFile(path.join(context, 'lib', 'greet.js'), 'export const greet = () => "hi";\n');
    built = await buildImage({
      contextDir: context,
      config: { cmd: ['node', 'server.js'], env: { PORT: '8080' }, exposedPorts: [8080] },
      registry,
      repo: 'team-a/hello',
      tag: 'v1',
    });
  });

  after(async () => {
    if (!SKOPEO) return;
    await app.close();
    await rm(root, { recursive: true, force: true });
  });

  test('skopeo inspect shows the built digest and config', async (t) => {
    if (skipWithoutSkopeo(t)) return;
    const image = `docker://${host}/team-a/hello:v1`;
    const info = JSON.parse(await ok('inspect', '--tls-verify=false', '--creds', CREDS, image));
    assert.equal(info.Digest, built.digest);
    assert.equal(info.Architecture, hostPlatform().architecture);
    assert.equal(info.Os, hostPlatform().os);
    assert.equal(info.Layers.length, 1);
    assert.ok(info.Env.includes('PORT=8080'));

    const config = JSON.parse(
      await ok('inspect', '--config', '--tls-verify=false', '--creds', CREDS, image),
    );
    assert.deepEqual(config.config.Cmd, ['node', 'server.js']);
    assert.equal(config.config.WorkingDir, '/app');
    assert.deepEqual(config.config.ExposedPorts, { '8080/tcp': {} });
    assert.equal(config.rootfs.diff_ids.length, 1);
  });

  test('skopeo pulls into an OCI layout and pushes it back unchanged', async (t) => {
    if (skipWithoutSkopeo(t)) return;
    const layout = path.join(root, 'layout');
    await ok(
      'copy',
      '--policy',
      policy(),
      '--src-tls-verify=false',
      '--src-creds',
      CREDS,
      `docker://${host}/team-a/hello:v1`,
      `oci:${layout}:v1`,
    );
    const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].digest, built.digest);

    await ok(
      'copy',
      '--policy',
      policy(),
      '--dest-tls-verify=false',
      '--dest-creds',
      CREDS,
      `oci:${layout}:v1`,
      `docker://${host}/team-a/copy:v2`,
    );
    assert.equal((await registry.getManifest('team-a/copy', 'v2'))?.digest, built.digest);
    const info = JSON.parse(
      await ok(
        'inspect',
        '--tls-verify=false',
        '--creds',
        CREDS,
        `docker://${host}/team-a/copy:v2`,
      ),
    );
    assert.equal(info.Digest, built.digest);
    assert.deepEqual(
      JSON.parse(
        await ok(
          'list-tags',
          '--tls-verify=false',
          '--creds',
          CREDS,
          `docker://${host}/team-a/copy`,
        ),
      ).Tags,
      ['v2'],
    );
  });

  test('wrong credentials are refused', async (t) => {
    if (skipWithoutSkopeo(t)) return;
    const run = await skopeo(
      'inspect',
      '--tls-verify=false',
      '--creds',
      'alice:wrong',
      `docker://${host}/team-a/hello:v1`,
    );
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /unauthorized|authentication required|401/i);
  });

  test("another team's repositories are refused, for pull and for push", async (t) => {
    if (skipWithoutSkopeo(t)) return;
    // A pull from team-b looks exactly like a repository that does not exist.
    const pull = await skopeo(
      'inspect',
      '--tls-verify=false',
      '--creds',
      CREDS,
      `docker://${host}/team-b/hello:v1`,
    );
    assert.notEqual(pull.code, 0);
    assert.match(pull.stderr, /name unknown|manifest unknown|not found/i);

    const layout = path.join(root, 'push-layout');
    await ok(
      'copy',
      '--policy',
      policy(),
      '--src-tls-verify=false',
      '--src-creds',
      CREDS,
      `docker://${host}/team-a/hello:v1`,
      `oci:${layout}:v1`,
    );
    const push = await skopeo(
      'copy',
      '--policy',
      policy(),
      '--dest-tls-verify=false',
      '--dest-creds',
      CREDS,
      `oci:${layout}:v1`,
      `docker://${host}/team-b/stolen:v1`,
    );
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /denied|forbidden|403/i);
    assert.deepEqual(await registry.listRepositories(), ['team-a/copy', 'team-a/hello']);
  });
});
