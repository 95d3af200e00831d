/**
 * Killing the server (SIGKILL) in the middle of a run: after a restart on the same data
 * directory the run is marked failed (never "running" forever) with its log up to the kill,
 * the deployed app is still deployed by the same process, and nothing stored is lost.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  api,
  cloneUrl,
  git,
  killProcessesUnder,
  runLog,
  signup,
  startValve,
  waitFor,
  waitForRun,
  type Valve,
} from './harness.js';

interface Environment {
  name: string;
  url: string;
  health: string;
  image: string;
  instances: { pid: number }[];
}

function processWithArgument(argument: string): boolean {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(argument)) return true;
    } catch {
      // Exited meanwhile.
    }
  }
  return false;
}

const work = mkdtempSync(join(tmpdir(), 'valve-restart-'));
const dataDir = mkdtempSync(join(tmpdir(), 'valve-restart-data-'));
let valve: Valve | undefined;

after(async () => {
  await valve?.stop();
  killProcessesUnder(dataDir);
  rmSync(work, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

test('a server killed during a run restarts with the run failed, the app deployed and no data lost', async () => {
  valve = await startValve({ dataDir });
  const alice = await signup(valve, 'alice', 'dev');
  const app = 'dev/hello';
  assert.equal(
    (
      await api(valve, alice.token, 'POST', '/api/apps', {
        team: 'dev',
        name: 'hello',
        template: 'node-http',
      })
    ).status,
    201,
  );
  const dir = join(work, 'hello');
  git(work, ['clone', '-q', cloneUrl(valve, alice, app), dir]);
  git(dir, ['commit', '-q', '--allow-empty', '-m', 'first deploy']);
  git(dir, ['push', '-q', 'origin', 'main']);
  assert.equal((await waitForRun(valve, alice, app, 1)).status, 'succeeded');
  const env = (await api<Environment[]>(valve, alice.token, 'GET', `/api/apps/${app}/environments`))
    .body[0]!;
  assert.equal(env.health, 'healthy');

  // A run that will be in the middle of a long step when the server dies. The sleep's unique
  // duration finds it in the host's process list.
  const marker = `${120 + Math.floor(Math.random() * 600)}.${Date.now() % 1000}`;
  const workflow = join(dir, '.valve/workflows/ci.yml');
  writeFileSync(
    workflow,
    readFileSync(workflow, 'utf8').replace(
      '        run: npm test',
      `        run: |\n          echo before the kill\n          sleep ${marker}`,
    ),
  );
  git(dir, ['commit', '-qam', 'slow tests']);
  git(dir, ['push', '-q', 'origin', 'main']);
  await waitFor('the slow step to start', async () =>
    (await runLog(valve!, alice, app, 2)).includes('before the kill'),
  );
  await valve.kill();

  valve = await startValve({ dataDir });
  const run = await waitForRun(valve, alice, app, 2);
  assert.equal(run.status, 'failed');
  const log = await runLog(valve, alice, app, 2);
  assert.match(log, /before the kill/, 'the log up to the kill is kept');
  assert.match(log, /server stopped during this run/);
  assert.ok(
    !processWithArgument(marker),
    'the step that was running when the server died is stopped',
  );

  // Everything stored before the kill is still there: user, token, app, first run, deployment.
  const first = await api<{ status: string }>(valve, alice.token, 'GET', `/api/apps/${app}/runs/1`);
  assert.equal(first.body.status, 'succeeded');
  const envAfter = await waitFor('the environment to be healthy', async () => {
    const found = (
      await api<Environment[]>(valve!, alice.token, 'GET', `/api/apps/${app}/environments`)
    ).body[0]!;
    return found.health === 'healthy' ? found : undefined;
  });
  assert.equal(envAfter.image, env.image);
  assert.equal(envAfter.url, env.url, 'the environment keeps its address across restarts');
  assert.deepEqual(
    envAfter.instances.map((i) => i.pid),
    env.instances.map((i) => i.pid),
    'the instance was re-adopted, not restarted',
  );
  assert.equal((await fetch(envAfter.url)).status, 200);
});
