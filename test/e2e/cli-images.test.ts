/**
 * `valve images` as a real process against the real server, with images pushed over the OCI
 * Distribution API as a registry client does (Basic auth with an API token): the team's
 * repositories, an app's tags (sizes, platforms, who pushed), one image's layers and config, a
 * multi-platform index's images, `--json`, deleting a tag (refused without --yes off a
 * terminal). Then the API's access rules: a viewer reads but may not delete (403), another
 * team and anonymous callers get 404 and 401.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { api, repoRoot, signup, startValve, type Session, type Valve } from './harness.js';

const username = 'cleo';
const password = 'correct horse battery';
const team = 'dev';
const app = 'shop';
const repo = `${team}/${app}`;

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

let valve: Valve;
let work: string;
let configFile: string;
let session: Session;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `valve ...args` as its own process (standard input is a pipe, not a terminal). */
function valveCli(args: string[], input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args],
      {
        cwd: repoRoot,
        env: { ...process.env, VALVE_CONFIG: configFile, VALVE_PASSWORD: '' },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

async function ok(args: string[], input?: string): Promise<string> {
  const result = await valveCli(args, input);
  assert.equal(
    result.code,
    0,
    `valve ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`,
  );
  return result.stdout;
}

async function fails(args: string[]): Promise<string> {
  const result = await valveCli(args);
  assert.notEqual(result.code, 0, `valve ${args.join(' ')} should fail:\n${result.stdout}`);
  return result.stderr;
}

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

/** A request to the registry as `session`'s user, the way podman and skopeo authenticate. */
async function registry(method: string, path: string, body?: Buffer, contentType?: string) {
  const basic = Buffer.from(`${session.username}:${session.token}`).toString('base64');
  const response = await fetch(new URL(`/v2/${path}`, valve.url), {
    method,
    headers: {
      authorization: `Basic ${basic}`,
      ...(contentType ? { 'content-type': contentType } : {}),
    },
    body: body === undefined ? undefined : new Uint8Array(body),
  });
  assert.ok(response.ok, `${method} /v2/${path}: ${response.status} ${await response.text()}`);
  return response;
}

interface Pushed {
  digest: string;
  /** Manifest, config and layers. */
  size: number;
  body: Buffer;
  layers: string[];
}

/** Pushes a config and layers, then the manifest under `reference` (a tag or its digest). */
async function pushImage(architecture: string, layerTexts: string[], tag?: string) {
  const config = json({
    created: '2026-11-01T10:00:00Z',
    os: 'linux',
    architecture,
    config: {
      Entrypoint: ['/bin/shop'],
      Cmd: ['--port', '8080'],
      Env: ['PORT=8080'],
      ExposedPorts: { '8080/tcp': {} },
      WorkingDir: '/srv',
      Labels: { 'org.opencontainers.image.source': repo },
    },
    rootfs: { type: 'layers', diff_ids: [] },
  });
  const layers = layerTexts.map((text) => Buffer.from(`${architecture}: ${text}`));
  for (const blob of [config, ...layers]) {
    await registry('POST', `${repo}/blobs/uploads/?digest=${sha256(blob)}`, blob);
  }
  const body = json({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: sha256(config),
      size: config.length,
    },
    layers: layers.map((layer) => ({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: sha256(layer),
      size: layer.length,
    })),
  });
  const digest = sha256(body);
  await registry('PUT', `${repo}/manifests/${tag ?? digest}`, body, OCI_MANIFEST);
  const size = body.length + config.length + layers.reduce((sum, l) => sum + l.length, 0);
  return { digest, size, body, layers: layers.map(sha256) } satisfies Pushed;
}

let amd: Pushed;
let arm: Pushed;
let index: Pushed;

let earlierStepFailed = false;
function step(name: string, body: () => Promise<void>) {
  test(name, async (t) => {
    if (earlierStepFailed) return t.skip('an earlier step failed');
    try {
      await body();
    } catch (error) {
      earlierStepFailed = true;
      throw error;
    }
  });
}

before(async () => {
  valve = await startValve();
  work = mkdtempSync(join(tmpdir(), 'valve-cli-images-'));
  configFile = join(work, 'config', 'valve.json');
});

after(async () => {
  await valve?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

step('sign up, create an app, push two images and a multi-platform index', async () => {
  await ok(
    ['signup', '--server', valve.url, '--username', username, '--team', team, '--password-stdin'],
    `${password}\n`,
  );
  const saved = JSON.parse(readFileSync(configFile, 'utf8')) as { token: string };
  session = { username, team, token: saved.token };
  assert.match(await ok(['images']), /no images in team dev yet/);
  await ok(['apps', 'create', repo]);
  assert.match(await ok(['images', app]), /no tags in dev\/shop yet/);

  amd = await pushImage('amd64', ['base', 'app'], 'v1');
  await registry('PUT', `${repo}/manifests/latest`, amd.body, OCI_MANIFEST);
  // By digest, no tag: only reachable through the index.
  arm = await pushImage('arm64', ['base', 'app']);
  const indexBody = json({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      {
        mediaType: OCI_MANIFEST,
        digest: amd.digest,
        size: amd.body.length,
        platform: { os: 'linux', architecture: 'amd64' },
      },
      {
        mediaType: OCI_MANIFEST,
        digest: arm.digest,
        size: arm.body.length,
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      },
    ],
  });
  await registry('PUT', `${repo}/manifests/multi`, indexBody, OCI_INDEX);
  index = {
    digest: sha256(indexBody),
    size: indexBody.length + amd.size + arm.size,
    body: indexBody,
    layers: [],
  };
});

step("valve images lists the team's repositories; with an app, its tags", async () => {
  const repositories = await ok(['images']);
  assert.match(repositories, /^REPOSITORY\s+TAGS\s+SIZE\s+LAST PUSH\s+BY$/m);
  assert.match(repositories, /^dev\/shop\s+3\s+\S+ \S+\s+.*\(multi\)\s+cleo$/m);

  const tags = await ok(['images', app]);
  assert.match(tags, /^TAG\s+DIGEST\s+SIZE\s+PLATFORMS\s+CREATED\s+PUSHED BY\s+AGE$/m);
  const row = (tag: string) => tags.split('\n').find((line) => line.startsWith(`${tag} `)) ?? '';
  assert.match(row('v1'), new RegExp(`${amd.digest.slice(0, 19)}\\s+${amd.size} B\\s+linux/amd64`));
  assert.match(row('v1'), /2026-11-01T10:00:00Z\s+cleo\s+\d+s ago$/);
  assert.match(row('latest'), new RegExp(amd.digest.slice(0, 19)));
  assert.match(row('multi'), /linux\/amd64,linux\/arm64\/v8/);
  // The same with the team named, and as JSON: the API's answer.
  const withoutAge = (text: string) => text.replace(/\d+[smhd] ago$/gm, '');
  assert.equal(withoutAge(await ok(['images', repo])), withoutAge(tags));
  const listed = JSON.parse(await ok(['images', app, '--json'])) as {
    tag: string;
    digest: string;
    size: number;
    kind: string;
    pushed: { by: string; via: string } | null;
  }[];
  assert.deepEqual(
    listed.map((t) => [t.tag, t.digest, t.size, t.kind, t.pushed?.by, t.pushed?.via]),
    [
      ['latest', amd.digest, amd.size, 'image', 'cleo', 'registry'],
      ['multi', index.digest, index.size, 'index', 'cleo', 'registry'],
      ['v1', amd.digest, amd.size, 'image', 'cleo', 'registry'],
    ],
  );
  const summary = JSON.parse(await ok(['images', '--json'])) as {
    repository: string;
    tagCount: number;
    size: number;
  }[];
  // Each blob once: the two images share nothing, the index adds itself.
  assert.deepEqual(summary, [
    {
      ...summary[0],
      repository: repo,
      tagCount: 3,
      size: amd.size + arm.size + index.body.length,
    },
  ]);
});

step('valve images show: layers and config; an index shows its platforms', async () => {
  const image = await ok(['images', 'show', `${app}:v1`]);
  assert.match(image, new RegExp(`^dev/shop@${amd.digest}$`, 'm'));
  assert.match(image, /^tags:\s+latest, v1$/m);
  assert.match(image, /^platforms:\s+linux\/amd64$/m);
  assert.match(image, /^pushed:\s+cleo, /m);
  assert.match(image, /^ {2}entrypoint: \["\/bin\/shop"\]$/m);
  assert.match(image, /^ {2}cmd:\s+\["--port","8080"\]$/m);
  assert.match(image, /^ {2}env:\s+PORT=8080$/m);
  assert.match(image, /^ {2}ports:\s+8080\/tcp$/m);
  for (const [i, layer] of amd.layers.entries()) {
    assert.match(
      image,
      new RegExp(`^ {2}${i + 1}\\s+${layer}\\s+application/vnd.oci.image.layer`, 'm'),
    );
  }
  const byDigest = JSON.parse(await ok(['images', 'show', `${repo}@${amd.digest}`, '--json'])) as {
    digest: string;
    layers: { digest: string }[];
    config: { workdir: string };
  };
  assert.equal(byDigest.digest, amd.digest);
  assert.deepEqual(
    byDigest.layers.map((l) => l.digest),
    amd.layers,
  );
  assert.equal(byDigest.config.workdir, '/srv');

  const multi = await ok(['images', 'show', `${app}:multi`]);
  assert.match(multi, /^kind:\s+multi-platform index/m);
  assert.match(multi, new RegExp(`^ {2}linux/amd64\\s+${amd.digest}\\s+`, 'm'));
  assert.match(multi, new RegExp(`^ {2}linux/arm64/v8\\s+${arm.digest}\\s+`, 'm'));
  assert.match(await fails(['images', 'show', `${app}:nope`]), /NOT_FOUND/);
  assert.match(await fails(['images', 'show', app]), /name a tag or digest/);
});

step('valve images rm deletes a tag only with --yes off a terminal', async () => {
  assert.match(await fails(['images', 'rm', `${app}:v1`]), /without confirmation: pass --yes/);
  assert.match(await ok(['images', app]), /^v1 /m);
  assert.match(await ok(['images', 'rm', `${app}:v1`, '--yes']), /deleted tag dev\/shop:v1/);
  const tags = await ok(['images', app]);
  assert.doesNotMatch(tags, /^v1 /m);
  assert.match(tags, /^latest /m, 'the image stays under its other tag');
  assert.match(await fails(['images', 'rm', `${app}:v1`, '--yes']), /NOT_FOUND/);
  assert.match(await fails(['images', 'rm', `${app}@${amd.digest}`, '--yes']), /name the tag/);
});

step(
  'the API: viewers read but do not delete; other teams and anonymous callers see nothing',
  async () => {
    const viewer = await signup(valve, 'vera', team);
    const approved = await api(valve, session.token, 'POST', `/api/teams/${team}/members/vera`, {
      role: 'viewer',
      status: 'active',
    });
    assert.equal(approved.status, 204);
    const tagsPath = `/api/teams/${team}/images/${app}/tags`;
    const read = await api<{ tag: string }[]>(valve, viewer.token, 'GET', tagsPath);
    assert.equal(read.status, 200);
    assert.deepEqual(
      read.body.map((t) => t.tag),
      ['latest', 'multi'],
    );
    const denied = await api<{ error: { code: string } }>(
      valve,
      viewer.token,
      'DELETE',
      `${tagsPath.slice(0, -'/tags'.length)}/tags/latest`,
    );
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, 'AUTH_FORBIDDEN');

    const outsider = await signup(valve, 'oscar', 'ops');
    for (const path of [
      `/api/teams/${team}/images`,
      tagsPath,
      `/api/teams/${team}/images/${app}/manifests/${encodeURIComponent(amd.digest)}`,
    ]) {
      const hidden = await api<{ error: { code: string } }>(valve, outsider.token, 'GET', path);
      assert.equal(hidden.status, 404, path);
      assert.equal(hidden.body.error.code, 'NOT_FOUND');
      assert.equal((await api(valve, null, 'GET', path)).status, 401, path);
    }
    const deleteAsOutsider = await api(valve, outsider.token, 'DELETE', `${tagsPath}/latest`);
    assert.equal(deleteAsOutsider.status, 404);

    const invalid = await api<{ error: { code: string } }>(
      valve,
      session.token,
      'GET',
      `/api/teams/${team}/images/${app}/manifests/sha256%3Anot-hex`,
    );
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body.error.code, 'INPUT_INVALID');
    // Nothing was deleted by the refused calls.
    assert.equal((await api<unknown[]>(valve, session.token, 'GET', tagsPath)).body.length, 2);
  },
);
