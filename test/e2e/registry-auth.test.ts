/**
 * Registry auth with real clients against the real server: the 401 challenge is the Docker
 * token flow (Bearer realm/service/scope), skopeo and podman with a username and API token go
 * through it, rights follow team membership, a public repository is pulled anonymously, and
 * a token opens only its own repositories for a few minutes.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test, type TestContext } from 'node:test';
import { SignJWT, decodeJwt } from 'jose';
import tar from 'tar-stream';
import { podmanInstalled } from '../support/images.js';
import { api, signup, startValve, waitFor, type Session, type Valve } from './harness.js';

const SKOPEO = spawnSync('skopeo', ['--version']).status === 0;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let valve: Valve;
let host: string;
let work: string;
let alice: Session; // admin of team dev
let carol: Session; // developer in team dev
let bob: Session; // admin of team ops, nothing in dev

/** Runs a container tool with its own HOME and auth file, so no stored credentials leak in. */
function tool(command: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      {
        env: {
          ...process.env,
          HOME: join(work, 'home'),
          REGISTRY_AUTH_FILE: join(work, 'auth.json'),
        },
        maxBuffer: 16 * 1024 * 1024,
        timeout: 120_000,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const skopeo = (...args: string[]) => tool('skopeo', args);

async function ok(run: Promise<Run>, what: string): Promise<string> {
  const result = await run;
  assert.equal(result.code, 0, `${what} failed:\n${result.stderr}`);
  return result.stdout;
}

const creds = (session: Session) => `${session.username}:${session.token}`;
const image = (repo: string) => `docker://${host}/${repo}`;

function inspect(repo: string, ...auth: string[]): Promise<Run> {
  return skopeo('inspect', '--tls-verify=false', ...auth, image(repo));
}

function skipWithoutSkopeo(t: TestContext): boolean {
  if (!SKOPEO) t.skip('skopeo is not installed');
  return !SKOPEO;
}

/** A one-layer OCI image layout on disk, tag "1", for skopeo to push from. */
async function writeOciLayout(dir: string): Promise<void> {
  const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
  const pack = tar.pack();
  pack.entry({ name: 'hello.txt', mode: 0o644, mtime: new Date(0) }, 'hello from valve\n');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  const layerTar = Buffer.concat(chunks);
  const layer = gzipSync(layerTar);
  const ociArch: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
  const architecture = ociArch[process.arch] ?? process.arch;
  const config = Buffer.from(
    JSON.stringify({
      architecture,
      os: 'linux',
      config: { Cmd: ['cat', '/hello.txt'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layerTar)}`] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${sha256(config)}`,
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          digest: `sha256:${sha256(layer)}`,
          size: layer.length,
        },
      ],
    }),
  );
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const blob of [layer, config, manifest])
    writeFileSync(join(dir, 'blobs', 'sha256', sha256(blob)), blob);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${sha256(manifest)}`,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': '1' },
        },
      ],
    }),
  );
}

/** The "registry token issued" lines the server logged so far. */
function issuedTokens(): {
  subject: string | null;
  access: { name: string; actions: string[] }[];
}[] {
  return readFileSync(join(valve.dataDir, 'logs', 'valve.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { msg: string; subject: string | null; access: [] })
    .filter((entry) => entry.msg === 'registry token issued');
}

async function registryToken(session: Session | null, ...scopes: string[]) {
  const query = new URLSearchParams([
    ['service', 'valve-registry'],
    ...scopes.map((scope) => ['scope', scope]),
  ]);
  const response = await fetch(new URL(`/auth/registry/token?${query}`, valve.url), {
    headers: session
      ? { authorization: `Basic ${Buffer.from(creds(session)).toString('base64')}` }
      : {},
  });
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()) as { token: string; expires_in: number };
}

async function tagsWith(repo: string, authorization: string) {
  return fetch(new URL(`/v2/${repo}/tags/list`, valve.url), { headers: { authorization } });
}

async function setPublic(session: Session, repo: string, imagePublic: boolean) {
  return api<{ imagePublic: boolean }>(valve, session.token, 'PATCH', `/api/apps/${repo}`, {
    imagePublic,
  });
}

before(async () => {
  valve = await startValve();
  host = new URL(valve.url).host;
  work = mkdtempSync(join(tmpdir(), 'valve-registry-auth-'));
  mkdirSync(join(work, 'home'));
  alice = await signup(valve, 'alice', 'dev');
  bob = await signup(valve, 'bob', 'ops');
  carol = await signup(valve, 'carol', 'dev');
  const approved = await api(valve, alice.token, 'POST', '/api/teams/dev/members/carol', {
    status: 'active',
  });
  assert.equal(approved.status, 204, JSON.stringify(approved.body));
  for (const name of ['hello', 'other']) {
    const created = await api(valve, alice.token, 'POST', '/api/apps', {
      team: 'dev',
      name,
      template: 'node-http',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  if (SKOPEO) {
    await writeOciLayout(join(work, 'oci'));
    await ok(
      skopeo(
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        creds(alice),
        `oci:${join(work, 'oci')}:1`,
        `${image('dev/hello')}:1`,
      ),
      'skopeo copy to dev/hello',
    );
  }
});

after(async () => {
  await valve?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('registry auth', () => {
  test('401s carry a Bearer challenge with an absolute realm, the service and the scope', async () => {
    const base = await fetch(new URL('/v2/', valve.url));
    assert.equal(base.status, 401);
    assert.equal(
      base.headers.get('www-authenticate'),
      `Bearer realm="${valve.url}/auth/registry/token",service="valve-registry"`,
    );
    const repo = await fetch(new URL('/v2/dev/hello/manifests/1', valve.url));
    assert.equal(repo.status, 401);
    assert.equal(
      repo.headers.get('www-authenticate'),
      `Bearer realm="${valve.url}/auth/registry/token",service="valve-registry",scope="repository:dev/hello:pull"`,
    );
  });

  test('skopeo with a username and API token pushes and pulls through the token flow', async (t) => {
    if (skipWithoutSkopeo(t)) return;
    // The push in before() asked the token endpoint for pull and push on dev/hello.
    const pushTokens = await waitFor('the push token in the log', async () =>
      issuedTokens().filter(
        (entry) =>
          entry.subject === 'alice' &&
          entry.access.some((a) => a.name === 'dev/hello' && a.actions.includes('push')),
      ),
    );
    assert.ok(pushTokens.length > 0);

    const seen = issuedTokens().length;
    const info = JSON.parse(await ok(inspect('dev/hello:1', '--creds', creds(alice)), 'inspect'));
    assert.match(info.Digest, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(info.RepoTags, ['1']);
    await waitFor('the pull token in the log', async () => issuedTokens().length > seen);
    const pulled = join(work, 'pulled');
    await ok(
      skopeo(
        'copy',
        '--src-tls-verify=false',
        '--src-creds',
        creds(carol),
        `${image('dev/hello')}:1`,
        `oci:${pulled}:1`,
      ),
      'skopeo copy from dev/hello',
    );
    assert.ok(readFileSync(join(pulled, 'index.json'), 'utf8').includes(info.Digest));

    const wrong = await inspect('dev/hello:1', '--creds', 'alice:vlv_wrong');
    assert.notEqual(wrong.code, 0);
  });

  test('Basic and Bearer API tokens still work without the token flow', async () => {
    const basic = await tagsWith(
      'dev/hello',
      `Basic ${Buffer.from(creds(alice)).toString('base64')}`,
    );
    assert.equal(basic.status, 200);
    assert.equal((await tagsWith('dev/hello', `Bearer ${alice.token}`)).status, 200);
    assert.equal((await tagsWith('dev/hello', `Bearer ${bob.token}`)).status, 404);
  });

  test('a user of another team is refused, and the token endpoint grants him nothing', async (t) => {
    const granted = await registryToken(bob, 'repository:dev/hello:pull,push');
    assert.deepEqual(decodeJwt(granted.token).access, []);
    assert.equal(decodeJwt(granted.token).sub, 'bob');
    assert.equal((await tagsWith('dev/hello', `Bearer ${granted.token}`)).status, 401);

    if (skipWithoutSkopeo(t)) return;
    const refused = await inspect('dev/hello:1', '--creds', creds(bob));
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /unauthorized|authentication required|denied/i);
    const push = await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      creds(bob),
      `oci:${join(work, 'oci')}:1`,
      `${image('dev/hello')}:bob`,
    );
    assert.notEqual(push.code, 0);
  });

  test('anonymous pull works only once a team admin makes the repository public', async (t) => {
    if (SKOPEO) {
      const refused = await inspect('dev/hello:1', '--no-creds');
      assert.notEqual(refused.code, 0, 'a private repository is not readable anonymously');
    }
    const anonymous = await registryToken(null, 'repository:dev/hello:pull');
    assert.deepEqual(decodeJwt(anonymous.token).access, []);

    assert.equal((await setPublic(bob, 'dev/hello', true)).status, 404, 'not his team');
    assert.equal((await setPublic(carol, 'dev/hello', true)).status, 403, 'developers may not');
    const made = await setPublic(alice, 'dev/hello', true);
    assert.equal(made.status, 200, JSON.stringify(made.body));
    assert.equal(made.body.imagePublic, true);
    const app = await api<{ imagePublic: boolean }>(
      valve,
      carol.token,
      'GET',
      '/api/apps/dev/hello',
    );
    assert.equal(app.body.imagePublic, true);

    const publicToken = await registryToken(null, 'repository:dev/hello:pull,push');
    assert.deepEqual(decodeJwt(publicToken.token).access, [
      { type: 'repository', name: 'dev/hello', actions: ['pull'] },
    ]);
    const bobs = await registryToken(bob, 'repository:dev/hello:pull,push');
    assert.deepEqual(decodeJwt(bobs.token).access, [
      { type: 'repository', name: 'dev/hello', actions: ['pull'] },
    ]);
    // Push stays closed: 403 for a signed-in stranger, 401 for nobody.
    const push = (authorization?: string) =>
      fetch(new URL('/v2/dev/hello/blobs/uploads/', valve.url), {
        method: 'POST',
        headers: authorization ? { authorization } : {},
      });
    assert.equal((await push(`Bearer ${bob.token}`)).status, 403);
    assert.equal((await push()).status, 401);
    assert.equal((await fetch(new URL('/v2/dev/other/tags/list', valve.url))).status, 401);

    if (SKOPEO) {
      const info = JSON.parse(await ok(inspect('dev/hello:1', '--no-creds'), 'anonymous inspect'));
      assert.deepEqual(info.RepoTags, ['1']);
      await ok(inspect('dev/hello:1', '--creds', creds(bob)), 'inspect by another team');
    } else {
      t.diagnostic('skopeo is not installed: anonymous pull checked over HTTP only');
    }
    assert.equal((await fetch(new URL('/v2/dev/hello/tags/list', valve.url))).status, 200);

    assert.equal((await setPublic(alice, 'dev/hello', false)).body.imagePublic, false);
    assert.equal((await fetch(new URL('/v2/dev/hello/tags/list', valve.url))).status, 401);
    if (SKOPEO) assert.notEqual((await inspect('dev/hello:1', '--no-creds')).code, 0);
  });

  test('a token for one repository does not open another', async () => {
    const forHello = await registryToken(alice, 'repository:dev/hello:pull');
    assert.equal(forHello.expires_in, 300);
    assert.equal((await tagsWith('dev/hello', `Bearer ${forHello.token}`)).status, 200);
    const other = await tagsWith('dev/other', `Bearer ${forHello.token}`);
    assert.equal(other.status, 401);
    assert.match(other.headers.get('www-authenticate') ?? '', /scope="repository:dev\/other:pull"/);
    const push = await fetch(new URL('/v2/dev/hello/blobs/uploads/', valve.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${forHello.token}` },
    });
    assert.equal(push.status, 401, 'a pull token does not push');
  });

  test('an expired token is refused', async () => {
    // Signed as the server signs, with its key: only the dates differ.
    const key = Buffer.from(
      readFileSync(join(valve.dataDir, 'registry-token.key'), 'utf8').trim(),
      'base64',
    );
    const sign = (issuedAt: number) =>
      new SignJWT({ access: [{ type: 'repository', name: 'dev/hello', actions: ['pull'] }] })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuer('valve')
        .setAudience('valve-registry')
        .setSubject('alice')
        .setIssuedAt(issuedAt)
        .setNotBefore(issuedAt)
        .setExpirationTime(issuedAt + 300)
        .sign(key);
    const now = Math.floor(Date.now() / 1000);
    assert.equal((await tagsWith('dev/hello', `Bearer ${await sign(now)}`)).status, 200);
    const expired = await tagsWith('dev/hello', `Bearer ${await sign(now - 301)}`);
    assert.equal(expired.status, 401);
    assert.equal(
      (
        await fetch(new URL('/v2/', valve.url), {
          headers: { authorization: `Bearer ${await sign(now - 301)}` },
        })
      ).status,
      401,
    );
  });

  test('podman logs in with an API token and pulls', async (t) => {
    if (!(await podmanInstalled())) return t.skip('podman is not installed');
    if (skipWithoutSkopeo(t)) return; // the image was pushed with skopeo
    const authfile = join(work, 'podman-auth.json');
    const podman = (...args: string[]) => tool('podman', args);
    const refused = await podman(
      'login',
      '--tls-verify=false',
      '--authfile',
      authfile,
      '-u',
      'alice',
      '-p',
      'vlv_wrong',
      host,
    );
    assert.notEqual(refused.code, 0, 'a wrong token does not log in');

    await ok(
      podman(
        'login',
        '--tls-verify=false',
        '--authfile',
        authfile,
        '-u',
        'alice',
        '-p',
        alice.token,
        host,
      ),
      'podman login',
    );
    const reference = `${host}/dev/hello:1`;
    try {
      await ok(
        podman('pull', '--tls-verify=false', '--authfile', authfile, '--quiet', reference),
        'podman pull',
      );
      const listed = await ok(podman('image', 'exists', reference), 'podman image exists');
      assert.equal(listed, '');
    } finally {
      await podman('rmi', '--force', reference);
    }
  });
});
