import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openStore } from '../store/index.js';
import { deployMigrations } from './migrations.js';
import { TargetRegistry, targetInput, type TargetDriverOptions } from './targets-registry.js';
import type { Target } from './targets/target.js';

const dir = mkdtempSync(join(tmpdir(), 'valve-targets-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const fakeTarget = (name: string): Target =>
  ({
    name,
    capabilities: {
      rollingUpdate: true,
      canary: false,
      blueGreen: false,
      restartOnCrash: true,
      selfHeal: false,
      logs: true,
      prune: true,
    },
    closed: 0,
    async recover() {},
    async close() {
      (this as { closed: number }).closed++;
    },
  }) as unknown as Target;

const cipher = {
  encrypt: (plain: string, aad: string) => `${aad}|${[...plain].reverse().join('')}`,
  decrypt: (sealed: string, aad: string) => {
    assert.ok(sealed.startsWith(`${aad}|`), 'the token is bound to its team and target');
    return [...sealed.slice(aad.length + 1)].reverse().join('');
  },
};

async function registry(localTeams?: string[]) {
  const store = await openStore(join(dir, `${Math.random()}.db`), [deployMigrations]);
  const made: TargetDriverOptions[] = [];
  const targets = new TargetRegistry({
    db: store.db,
    local: fakeTarget('local'),
    cipher,
    localTeams,
    dataDir: dir,
    drivers: {
      kubernetes: (options) => {
        made.push(options);
        return fakeTarget(options.name);
      },
    },
  });
  return { targets, made, close: () => store.close() };
}

test('every team is given the local target unless the server restricts it', async () => {
  const open = await registry();
  assert.equal((await open.targets.resolve('dev', 'local')).name, 'local');
  assert.deepEqual(
    (await open.targets.list('dev')).map((t) => t.name),
    ['local'],
  );
  await open.close();

  const restricted = await registry(['ops']);
  await assert.rejects(restricted.targets.resolve('dev', 'local'), {
    code: 'DEPLOY_TARGET_UNKNOWN',
    message: 'target local is not registered for team dev',
  });
  assert.equal((await restricted.targets.resolve('ops', 'local')).name, 'local');
  assert.deepEqual(await restricted.targets.list('dev'), []);
  await assert.rejects(
    restricted.targets.add('dev', { name: 'laptop', kind: 'local', config: {} }, 'alice'),
    /does not give the local target to team dev/,
  );
  await restricted.close();
});

test('a team uses only the targets it registered; the token is sealed and opened for the driver', async () => {
  const { targets, made, close } = await registry();
  await assert.rejects(targets.resolve('dev', 'prod-cluster'), {
    message: 'target prod-cluster is not registered for team dev',
  });
  const input = targetInput.parse({
    name: 'prod-cluster',
    kind: 'kubernetes',
    config: { server: 'https://10.0.0.1:6443', namespace: 'shop', token: 'tok-123' },
  });
  const view = await targets.add('dev', input, 'alice');
  assert.deepEqual(view.config, {
    server: 'https://10.0.0.1:6443',
    namespace: 'shop',
    token: '(sealed)',
  });
  assert.equal(view.createdBy, 'alice');
  const target = await targets.resolve('dev', 'prod-cluster');
  assert.equal(target.name, 'prod-cluster');
  assert.equal(await targets.resolve('dev', 'prod-cluster'), target, 'one instance per target');
  assert.equal(made.length, 1);
  assert.equal(made[0]!.config.token, 'tok-123');
  assert.equal(made[0]!.team, 'dev');
  // Another team does not get it.
  await assert.rejects(targets.resolve('ops', 'prod-cluster'), {
    code: 'DEPLOY_TARGET_UNKNOWN',
  });
  await assert.rejects(targets.add('dev', input, 'alice'), { code: 'DEPLOY_TARGET_EXISTS' });
  await assert.rejects(targets.remove('dev', 'prod-cluster', ['hello/prod']), {
    code: 'DEPLOY_TARGET_IN_USE',
  });
  await targets.remove('dev', 'prod-cluster', []);
  assert.equal((target as unknown as { closed: number }).closed, 1);
  await assert.rejects(targets.resolve('dev', 'prod-cluster'), {
    code: 'DEPLOY_TARGET_UNKNOWN',
  });
  await close();
});

test('target input is validated per kind', () => {
  const issues = (value: unknown) => {
    const result = targetInput.safeParse(value);
    return result.success ? [] : result.error.issues.map((i) => i.path.join('.'));
  };
  assert.deepEqual(issues({ name: 'local', kind: 'local' }), ['name']);
  assert.deepEqual(
    issues({ name: 'k', kind: 'kubernetes', config: { server: 'nope', namespace: 'a' } }),
    ['config.server', 'config.token'],
  );
  assert.deepEqual(issues({ name: 'p', kind: 'podman', config: { podman: '/bin/sh' } }), [
    'config',
  ]);
  assert.deepEqual(issues({ name: 'Bad_Name', kind: 'podman' }), ['name']);
  assert.deepEqual(issues({ name: 'x', kind: 'nomad' }), ['kind']);
});
