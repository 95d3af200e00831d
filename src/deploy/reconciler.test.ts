/** The sync decisions, as a table: what the reconciler does for each desired/applied/live state. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  defaultSyncPolicy,
  detectDrift,
  planSync,
  type PlanInput,
  type SyncPlan,
} from './reconciler.js';

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const workload = (c: string, replicas = 1) => ({
  image: { reference: `r/dev/hello@${digest(c)}`, repo: 'dev/hello', digest: digest(c) },
  replicas,
});
const running = (c: string, replicas = 1): PlanInput['live'] => ({
  health: 'healthy',
  image: digest(c),
  desiredReplicas: replicas,
  drift: [],
});
const nothing: PlanInput['live'] = {
  health: 'missing',
  image: null,
  desiredReplicas: 0,
  drift: [],
};

function plan(over: Partial<PlanInput>): SyncPlan {
  return planSync({
    desired: { hash: 'h2', workload: workload('b') },
    applied: { hash: 'h1', failedHash: null },
    live: running('a'),
    policy: defaultSyncPolicy,
    manual: null,
    ...over,
  });
}
const brief = (p: SyncPlan) => [p.status, p.action];

test('a new revision is applied when sync is automatic', () => {
  assert.deepEqual(brief(plan({})), ['OutOfSync', 'apply']);
});

test('with automatic sync off, a new revision waits as OutOfSync until a manual sync', () => {
  const policy = { ...defaultSyncPolicy, automated: false };
  const waiting = plan({ policy });
  assert.deepEqual(brief(waiting), ['OutOfSync', 'none']);
  assert.match(waiting.reason!, /manual sync/);
  assert.deepEqual(brief(plan({ policy, manual: { prune: true } })), ['OutOfSync', 'apply']);
});

test('a revision whose sync failed is not retried by a poll, only by a manual sync', () => {
  const failed = plan({ applied: { hash: null, failedHash: 'h2' } });
  assert.deepEqual(brief(failed), ['OutOfSync', 'none']);
  assert.match(failed.reason!, /failed/);
  assert.deepEqual(
    brief(plan({ applied: { hash: null, failedHash: 'h2' }, manual: { prune: true } })),
    ['OutOfSync', 'apply'],
  );
});

test('applied and running as desired is Synced with nothing to do', () => {
  assert.deepEqual(
    brief(plan({ desired: { hash: 'h1', workload: workload('a') }, live: running('a') })),
    ['Synced', 'none'],
  );
});

test('drift is repaired when self-heal is on, and only reported when it is off', () => {
  const desired = { hash: 'h1', workload: workload('a') };
  const live = { ...running('a'), drift: ['instance inst_1 not running'] };
  const healed = plan({ desired, live });
  assert.deepEqual(brief(healed), ['OutOfSync', 'repair']);
  assert.deepEqual(healed.drift, ['instance inst_1 not running']);
  const reported = plan({ desired, live, policy: { ...defaultSyncPolicy, selfHeal: false } });
  assert.deepEqual(brief(reported), ['OutOfSync', 'none']);
  assert.match(reported.reason!, /drift/);
  // Self-heal acts only with automatic sync.
  const manualOnly = plan({ desired, live, policy: { ...defaultSyncPolicy, automated: false } });
  assert.deepEqual(brief(manualOnly), ['OutOfSync', 'none']);
});

test('drift: another image, other replicas, or nothing running; an apply under way is none', () => {
  assert.deepEqual(detectDrift(workload('a'), running('a')), []);
  assert.match(
    detectDrift(workload('a'), running('c'))[0]!,
    /^runs sha256:cccc.* instead of sha256:aaaa/,
  );
  assert.deepEqual(detectDrift(workload('a', 2), running('a', 1)), ['1 replicas instead of 2']);
  assert.deepEqual(detectDrift(workload('a'), nothing), ['the workload is not running']);
  assert.deepEqual(detectDrift(workload('a'), { ...running('c'), health: 'progressing' }), []);
});

test('a workload removed from the deploy repo is pruned, unless prune is off', () => {
  const desired = { hash: 'h3', workload: null };
  assert.deepEqual(brief(plan({ desired })), ['OutOfSync', 'delete']);
  const kept = plan({ desired, policy: { ...defaultSyncPolicy, prune: false } });
  assert.deepEqual(brief(kept), ['OutOfSync', 'none']);
  assert.match(kept.reason!, /prune is off/);
  assert.deepEqual(
    brief(
      plan({ desired, policy: { ...defaultSyncPolicy, prune: false }, manual: { prune: true } }),
    ),
    ['OutOfSync', 'delete'],
  );
  // Nothing desired and nothing running: in sync; a new revision of that is just noted.
  assert.deepEqual(brief(plan({ desired, live: nothing })), ['Synced', 'record']);
  assert.deepEqual(brief(plan({ desired: { hash: 'h1', workload: null }, live: nothing })), [
    'Synced',
    'none',
  ]);
});
