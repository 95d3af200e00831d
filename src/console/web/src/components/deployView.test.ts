import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DeployRecord, Environment, Sync } from '../api.js';
import {
  environmentBusy,
  historyTimeline,
  promotionTargets,
  rollbackCandidates,
} from './deployView.js';

const deploy = (commit: string, date: string, extra: Partial<DeployRecord> = {}): DeployRecord => ({
  commit,
  subject: `deploy dev: hello@sha256:${commit} (source abc)`,
  kind: 'deploy',
  image: `127.0.0.1:7080/dev/hello@sha256:${commit}`,
  digest: `sha256:${commit}`,
  sourceCommit: 'abc',
  author: 'ada',
  email: 'ada@valve',
  date,
  promotedFrom: null,
  rolledBackTo: null,
  approvedBy: null,
  live: false,
  ...extra,
});

const sync = (id: string, commit: string, startedAt: string, extra: Partial<Sync> = {}): Sync => ({
  id,
  commit,
  sourceCommit: 'abc',
  image: null,
  trigger: 'auto',
  actor: 'ada',
  status: 'succeeded',
  message: null,
  startedAt,
  finishedAt: startedAt,
  ...extra,
});

const env = (name: string, extra: Partial<Environment> = {}): Environment => ({
  name,
  url: null,
  health: 'healthy',
  syncStatus: 'Synced',
  image: null,
  digest: null,
  sourceCommit: null,
  deployCommit: null,
  desiredCommit: null,
  deployedAt: null,
  message: null,
  target: 'local',
  sync: { automated: true, selfHeal: true, prune: true },
  drift: [],
  instances: [],
  lastSync: null,
  approval: null,
  pendingApproval: null,
  ...extra,
});

test('the history gives each commit its own latest sync result, and lists syncs no commit asked for', () => {
  const entries = historyTimeline({
    deploys: [
      deploy('c2', '2026-01-01T10:02:00Z', { live: true }),
      deploy('c1', '2026-01-01T10:00:00Z'),
    ],
    syncs: [
      sync('s4', 'c2', '2026-01-01T10:05:00Z', { trigger: 'self-heal', actor: 'valve' }),
      sync('s3', 'c2', '2026-01-01T10:04:00Z', { status: 'drifted', message: 'instance gone' }),
      sync('s2', 'c2', '2026-01-01T10:02:01Z'),
      sync('s1', 'c1', '2026-01-01T10:00:01Z', { status: 'failed', message: 'a.yaml:3:1: bad' }),
    ],
  });
  assert.deepEqual(
    entries.map((e) => [e.trigger, e.commit, e.result, e.author]),
    [
      ['self-heal', 'c2', 'succeeded', 'valve'],
      ['drift', 'c2', 'drifted', 'ada'],
      ['deploy', 'c2', 'succeeded', 'ada'],
      ['deploy', 'c1', 'failed', 'ada'],
    ],
  );
  assert.equal(entries[3]?.message, 'a.yaml:3:1: bad', 'a failure says why');
  assert.equal(entries[2]?.live, true);
  assert.equal(entries[0]?.deploy, null, 'a sync is nothing to roll back to');
});

test('a rollback returns to any deploy with an image but the newest and the one it restored', () => {
  const deploys = [
    deploy('c3', '2026-01-01T10:03:00Z'),
    deploy('c2', '2026-01-01T10:02:00Z'),
    deploy('c1', '2026-01-01T10:01:00Z'),
    deploy('c0', '2026-01-01T10:00:00Z', { kind: 'create', image: null, digest: null }),
  ];
  assert.deepEqual([...rollbackCandidates(deploys)], ['c2', 'c1']);
  // After a rollback to c1, c1's folder is what the newest holds: nothing to go back to.
  const rolledBack = [
    deploy('c4', '2026-01-01T10:04:00Z', { kind: 'rollback', rolledBackTo: 'c1' }),
    ...deploys,
  ];
  assert.deepEqual([...rollbackCandidates(rolledBack)], ['c3', 'c2']);
});

test('an environment promotes to those after it', () => {
  const envs = [env('dev'), env('stage'), env('prod')];
  assert.deepEqual(
    promotionTargets(envs, 'dev').map((e) => e.name),
    ['stage', 'prod'],
  );
  assert.deepEqual(
    promotionTargets(envs, 'stage').map((e) => e.name),
    ['prod'],
  );
  assert.deepEqual(promotionTargets(envs, 'prod'), []);
  assert.deepEqual(promotionTargets(envs, 'qa'), []);
});

test('busy: progressing, a sync running, or a change an automatic sync will apply', () => {
  assert.equal(environmentBusy(env('dev')), false);
  assert.equal(environmentBusy(env('dev', { health: 'progressing' })), true);
  assert.equal(
    environmentBusy(env('dev', { lastSync: sync('s', 'c', 'x', { status: 'running' }) })),
    true,
  );
  assert.equal(environmentBusy(env('dev', { syncStatus: 'OutOfSync' })), true);
  // Manual sync: it waits for a person, nothing happens meanwhile.
  assert.equal(
    environmentBusy(
      env('qa', {
        syncStatus: 'OutOfSync',
        sync: { automated: false, selfHeal: true, prune: true },
      }),
    ),
    false,
  );
  // A failed sync is not retried until a new commit or a manual sync.
  assert.equal(
    environmentBusy(
      env('dev', { syncStatus: 'OutOfSync', lastSync: sync('s', 'c', 'x', { status: 'failed' }) }),
    ),
    false,
  );
});
