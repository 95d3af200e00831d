/**
 * Cron schedules: a workflow with `on.schedule` starts runs on its app's default branch when a
 * scheduled time has passed since the last check, once per time, never for the past.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { EventBus } from '../events.js';
import { GitService } from '../git/index.js';
import { openStore } from '../store/index.js';
import { LocalExecutor } from './executors/local/index.js';
import { RunLogStore } from './logs.js';
import { pipelineMigrations } from './migrations.js';
import { SecretCipher, SecretStore } from './secrets/index.js';
import { PipelineService } from './service.js';
import type { StepServices } from './steps/index.js';

const dir = mkdtempSync(join(tmpdir(), 'valve-schedules-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a cron schedule fires once per scheduled time on the default branch', async () => {
  const store = await openStore(join(dir, 'valve.db'), [pipelineMigrations]);
  const events = new EventBus();
  const git = new GitService(join(dir, 'git'), events);
  await git.createRepo('dev/app.git');
  await git.commit(
    'dev/app.git',
    {
      branch: 'main',
      changes: {
        '.valve/workflows/nightly.yml': {
          content:
            "on:\n  schedule:\n    - cron: '*/5 * * * *'\njobs:\n  a:\n    steps:\n      - run: echo nightly\n",
        },
      },
      message: 'nightly',
      author: { name: 'alice', email: 'alice@valve' },
    },
    'alice',
  );
  const app = { id: 'app_1', team: 'dev', name: 'app', defaultBranch: 'main' };
  const pipelines = new PipelineService({
    db: store.db,
    events,
    logs: new RunLogStore(join(dir, 'runs'), events),
    executors: new Map([['local', new LocalExecutor()]]),
    // No step of this test runs (no run slot is free), so no service is used.
    services: {} as StepServices,
    secrets: new SecretStore(store.db, SecretCipher.load(dir, {})),
    workspaceRoot: join(dir, 'workspaces'),
    storageRoot: join(dir, 'pipelines'),
    maxParallelRuns: 0,
    maxParallelJobs: 1,
    sourceGitDir: (team, name) => git.pathOf(`${team}/${name}.git`),
    listApps: async () => [app],
  });
  const at = (time: string) => new Date(`2026-11-23T${time}:00Z`);
  assert.deepEqual(
    await pipelines.fireSchedules(at('10:01')),
    [],
    'first sight: nothing for the past',
  );
  assert.deepEqual(await pipelines.fireSchedules(at('10:04')), []);
  const fired = await pipelines.fireSchedules(at('10:05'));
  assert.equal(fired.length, 1);
  assert.equal(fired[0]!.trigger, 'schedule');
  assert.equal(fired[0]!.ref, 'refs/heads/main');
  assert.equal(fired[0]!.actor, 'schedule');
  assert.deepEqual(await pipelines.fireSchedules(at('10:06')), [], 'once per scheduled time');
  assert.equal(
    (await pipelines.fireSchedules(at('10:30'))).length,
    1,
    'missed times while down fire once, not many times',
  );
  await pipelines.stop();
  await store.close();
});
