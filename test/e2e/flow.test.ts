/**
 * The whole flow through public interfaces only: sign up, create an app from a template, clone,
 * change, git push, the pipeline runs, the image lands in the registry, the deploy repo gets the
 * digest, the local target serves it; a second push switches with no failed request; another
 * team is refused; a broken workflow, and a broken app spec, fail with file:line:column and leave
 * the app running.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  api,
  cloneUrl,
  git,
  runLog,
  signup,
  startValve,
  waitFor,
  waitForRun,
  type Session,
  type Valve,
} from './harness.js';

interface Environment {
  name: string;
  url: string | null;
  health: string;
  image: string | null;
  sourceCommit: string | null;
  instances: { pid: number }[];
}

let valve: Valve;
let alice: Session;
let work: string;
const app = 'dev/hello';

before(async () => {
  valve = await startValve();
  work = mkdtempSync(join(tmpdir(), 'valve-flow-'));
  alice = await signup(valve, 'alice', 'dev');
});

after(async () => {
  await valve?.destroy();
  rmSync(work, { recursive: true, force: true });
});

async function environment(): Promise<Environment> {
  const envs = await api<Environment[]>(valve, alice.token, 'GET', `/api/apps/${app}/environments`);
  assert.equal(envs.status, 200);
  return envs.body.find((e) => e.name === 'dev')!;
}

function commitAndPush(dir: string, message: string): string {
  git(dir, ['commit', '-qam', message]);
  git(dir, ['push', '-q', 'origin', 'main']);
  return git(dir, ['rev-parse', 'HEAD']).output.trim();
}

function setVersion(dir: string, version: string) {
  const file = join(dir, 'greeting.js');
  writeFileSync(
    file,
    readFileSync(file, 'utf8').replace(/VERSION = '[^']*'/, `VERSION = '${version}'`),
  );
}

test('an app goes from git push to serving HTTP', async (t) => {
  const created = await api<{ gitUrl: string; environments: Environment[] }>(
    valve,
    alice.token,
    'POST',
    '/api/apps',
    { team: 'dev', name: 'hello', template: 'node-http' },
  );
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(
    created.body.environments.map((e) => e.name),
    ['dev'],
  );

  const dir = join(work, 'hello');
  git(work, ['clone', '-q', cloneUrl(valve, alice, app), dir]);
  setVersion(dir, '2');
  const sha = commitAndPush(dir, 'version 2');

  const run = await waitForRun(valve, alice, app, 1);
  const log = await runLog(valve, alice, app, 1);
  assert.equal(run.status, 'succeeded', log);
  assert.match(log, /tests? 1/);
  assert.match(log, /pushed .*dev\/hello/);

  const env = await environment();
  assert.equal(env.health, 'healthy');
  assert.equal(env.sourceCommit, sha);
  const body = await (await fetch(env.url!)).text();
  assert.equal(body, 'Hello from hello (version 2)\n');

  // The deploy repo holds the rendered manifests with the image pinned by digest.
  const deployDir = join(work, 'hello-deploy');
  git(work, ['clone', '-q', cloneUrl(valve, alice, `${app}.deploy`), deployDir]);
  const deployment = readFileSync(join(deployDir, 'envs/dev/deployment.yaml'), 'utf8');
  assert.ok(deployment.includes(env.image!), deployment);
  assert.match(
    git(deployDir, ['log', '-1', '--format=%B']).output,
    new RegExp(`Source-Commit: ${sha}`),
  );

  // A real registry client reads the image.
  const skopeo = spawnSync(
    'skopeo',
    [
      'inspect',
      '--tls-verify=false',
      '--creds',
      `alice:${alice.token}`,
      `docker://${new URL(valve.url).host}/dev/hello:${sha.slice(0, 12)}`,
    ],
    { encoding: 'utf8' },
  );
  if (skopeo.error) {
    t.skip('skopeo is not installed');
  } else {
    assert.equal(skopeo.status, 0, skopeo.stderr);
    assert.equal(JSON.parse(skopeo.stdout).Digest, env.image!.split('@')[1]);
  }
});

test('a second push replaces the version with no failed request', async () => {
  const before = await environment();
  const dir = join(work, 'hello');
  let ok = 0;
  const failures: string[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      try {
        const response = await fetch(before.url!);
        const text = await response.text();
        if (response.status === 200) ok++;
        else failures.push(`${response.status} ${text}`);
      } catch (error) {
        failures.push(String(error));
      }
    }
  })();
  setVersion(dir, '3');
  commitAndPush(dir, 'version 3');
  const run = await waitForRun(valve, alice, app, 2);
  assert.equal(run.status, 'succeeded', await runLog(valve, alice, app, 2));
  await waitFor('version 3 to answer', async () =>
    (await (await fetch(before.url!)).text()).includes('version 3'),
  );
  polling = false;
  await poller;
  assert.deepEqual(failures, []);
  assert.ok(ok > 0);
  const after = await environment();
  assert.equal(after.url, before.url, 'the environment keeps its address');
  assert.notEqual(after.image, before.image);
  assert.notDeepEqual(
    after.instances.map((i) => i.pid),
    before.instances.map((i) => i.pid),
  );
});

test('another team can neither see nor push to the app', async () => {
  const bob = await signup(valve, 'bob', 'ops');
  for (const path of [
    `/api/apps/${app}`,
    `/api/apps/${app}/runs`,
    `/api/apps/${app}/runs/1/logs`,
    `/api/apps/${app}/environments`,
  ]) {
    const response = await api(valve, bob.token, 'GET', path);
    assert.equal(response.status, 404, path);
  }
  const list = await api<unknown[]>(valve, bob.token, 'GET', '/api/apps');
  assert.deepEqual(list.body, []);
  const created = await api(valve, bob.token, 'POST', '/api/apps', {
    team: 'dev',
    name: 'intruder',
    template: 'node-http',
  });
  assert.equal(created.status, 404);

  const clone = git(work, ['clone', '-q', cloneUrl(valve, bob, app), join(work, 'bob-clone')], {
    allowFailure: true,
  });
  assert.notEqual(clone.code, 0);
  assert.match(clone.output, /404|not found/i);

  // Pushing alice's clone with bob's credentials is refused too.
  const dir = join(work, 'hello');
  writeFileSync(join(dir, 'bob.txt'), 'bob was here\n');
  git(dir, ['add', 'bob.txt']);
  git(dir, ['commit', '-qm', 'bob']);
  const push = git(dir, ['push', cloneUrl(valve, bob, app), 'HEAD:main'], { allowFailure: true });
  assert.notEqual(push.code, 0);
  git(dir, ['reset', '-q', '--hard', 'HEAD~1']);

  const manifest = await fetch(new URL(`/v2/${app}/tags/list`, valve.url), {
    headers: { authorization: `Basic ${Buffer.from(`bob:${bob.token}`).toString('base64')}` },
  });
  assert.ok([403, 404].includes(manifest.status), `registry answered ${manifest.status}`);
  const anonymous = await fetch(new URL(`/api/apps/${app}`, valve.url));
  assert.equal(anonymous.status, 401);
});

test('a broken workflow fails with file, line and field, and the app keeps running', async () => {
  const before = await environment();
  const dir = join(work, 'hello');
  const file = join(dir, '.valve/workflows/ci.yml');
  const original = readFileSync(file, 'utf8');
  writeFileSync(
    file,
    original.replace('        run: npm test', '        run: npm test\n        timeout: 5'),
  );
  setVersion(dir, '4');
  commitAndPush(dir, 'broken workflow');
  const run = await waitForRun(valve, alice, app, 3);
  assert.equal(run.status, 'failed');
  const log = await runLog(valve, alice, app, 3);
  const line = original.split('\n').findIndex((l) => l.includes('run: npm test')) + 2;
  assert.match(
    log,
    new RegExp(`\\.valve/workflows/ci\\.yml:${line}:9: jobs\\.build\\.steps\\[1\\]\\.timeout`),
    log,
  );
  const after = await environment();
  assert.equal(after.image, before.image);
  assert.equal(await (await fetch(after.url!)).text(), 'Hello from hello (version 3)\n');
});

test('a broken app spec fails the run with file, line and field, and the app keeps running', async () => {
  const before = await environment();
  const dir = join(work, 'hello');
  // The workflow as it was before the last test broke it.
  git(dir, ['checkout', '-q', 'HEAD~1', '--', '.valve/workflows/ci.yml']);
  const file = join(dir, 'valve.yaml');
  const original = readFileSync(file, 'utf8');
  assert.match(original, /^ {4}replicas: 1$/m);
  writeFileSync(file, original.replace(/^ {4}replicas: 1$/m, '    replicas: many'));
  setVersion(dir, '5');
  commitAndPush(dir, 'broken app spec');
  const run = await waitForRun(valve, alice, app, 4);
  const log = await runLog(valve, alice, app, 4);
  assert.equal(run.status, 'failed', log);
  const line = original.split('\n').findIndex((l) => l === '    replicas: 1') + 1;
  assert.match(log, new RegExp(`valve\\.yaml:${line}:15: environments\\.dev\\.replicas`), log);
  const after = await environment();
  assert.equal(after.image, before.image);
  assert.equal(await (await fetch(after.url!)).text(), 'Hello from hello (version 3)\n');
});
