import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Fastify from 'fastify';
import { replyWithError } from '../http/errors.js';
import {
  Registry,
  RegistryTokens,
  acceptRegistryTokens,
  registryRoutes,
  registryTokenRoutes,
} from '../registry/index.js';
import { openStore } from '../store/index.js';
import { publishBusyboxHttpdImage } from '../../test/support/images.js';
import { deployMigrations } from './migrations.js';
import {
  TargetRegistry,
  dialable,
  registryPullDrivers,
  targetInput,
  type TargetDriverOptions,
} from './targets-registry.js';
import type { PodmanTarget } from './targets/podman/index.js';
import type { Target, WorkloadSpec } from './targets/target.js';

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

test('a wildcard listen address is dialled on loopback', () => {
  assert.equal(dialable('0.0.0.0:7080'), '127.0.0.1:7080');
  assert.equal(dialable(':::7080'), '[::1]:7080');
  assert.equal(dialable('valve.internal:7080'), 'valve.internal:7080');
});

const PODMAN = spawnSync('podman', ['--version']).status === 0;

test(
  'a registered podman target pulls from the registry with a pull token per repository',
  { skip: !PODMAN && 'podman is not installed' },
  async () => {
    // The registry as the server mounts it, taking no credential but a registry token: the
    // token endpoint trades the minted pull token (sent as the Basic password) for its own.
    const tokens = new RegistryTokens(randomBytes(32));
    const images = new Registry({ dataDir: join(dir, 'registry') });
    const app = Fastify();
    app.setErrorHandler((error, request, reply) => replyWithError(error, request, reply));
    const nobody = {
      authenticated: async () => false,
      authorize: async () => 'unauthenticated' as const,
    };
    await app.register(registryTokenRoutes({ tokens, subject: async () => null, ...nobody }));
    await app.register(
      registryRoutes(images, {
        ...acceptRegistryTokens(tokens, nobody),
        challenge: (request, scope) => tokens.challenge(`http://${request.headers.host}`, scope),
      }),
    );
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const host = `127.0.0.1:${port}`;
    const image = await publishBusyboxHttpdImage(images, host, 'team-a/hello', {
      version: 'pulled-v1',
    });
    const other = await publishBusyboxHttpdImage(images, host, 'team-b/hello', {
      version: 'loaded-v1',
    });

    const minted: { repo: string; team: string; name: string }[] = [];
    const store = await openStore(join(dir, `${Math.random()}.db`), [deployMigrations]);
    const targets = new TargetRegistry({
      db: store.db,
      local: fakeTarget('local'),
      dataDir: mkdtempSync(join(dir, 'data-')),
      portBase: 31_000 + Math.floor(Math.random() * 200) * 100,
      images,
      drivers: registryPullDrivers({
        // As the server passes it: the listen address, a wildcard dialled on loopback.
        host: () => `0.0.0.0:${port}`,
        pullToken: async (repo, target) => {
          minted.push({ repo, ...target });
          const access = [{ type: 'repository', name: repo, actions: ['pull'] }];
          return (await tokens.issue(`deploy-target:${target.team}/${target.name}`, access)).token;
        },
      }),
    });
    await targets.add('team-a', { name: 'box', kind: 'podman', config: {} }, 'alice');
    const target = (await targets.resolve('team-a', 'box')) as PodmanTarget;
    const spec = (key: string, pinned = image): WorkloadSpec => ({
      key,
      image: pinned,
      env: {},
      port: 8080,
      replicas: 1,
      readiness: { path: '/healthz' },
    });
    const exists = (name: string) => spawnSync('podman', ['image', 'exists', name]).status === 0;
    const [pulledName, loadedName] = target.imageNames(image);
    try {
      assert.equal(pulledName, `127.0.0.1:${port}/team-a/hello@${image.digest}`);
      assert.equal(exists(pulledName!), false, 'not in podman storage before');

      const progress: string[] = [];
      const status = await target.apply(spec('team-a/hello/dev'), (line) => progress.push(line));
      assert.equal(status.health, 'healthy');
      assert.equal(await (await fetch(status.url!)).text(), 'pulled-v1');
      assert.deepEqual(minted, [{ repo: 'team-a/hello', team: 'team-a', name: 'box' }]);
      assert.ok(progress.some((line) => line.startsWith(`pulling ${image.reference} from`)));
      assert.ok(!progress.some((line) => line.startsWith('loading')), progress.join('\n'));
      assert.equal(exists(pulledName!), true, 'pulled');
      assert.equal(exists(loadedName!), false, 'not loaded');

      // Already in podman's storage: neither a token nor a pull.
      const again: string[] = [];
      await target.apply(spec('team-a/hello/prod'), (line) => again.push(line));
      assert.equal(minted.length, 1);
      assert.ok(!again.some((line) => /^(pulling|loading)/.test(line)), again.join('\n'));

      // Another team's repository gets no token from this target: loaded, the fallback.
      const loaded: string[] = [];
      const status2 = await target.apply(spec('team-a/other/dev', other), (line) =>
        loaded.push(line),
      );
      assert.equal(await (await fetch(status2.url!)).text(), 'loaded-v1');
      assert.equal(minted.length, 1);
      assert.ok(
        loaded.some((line) => line.startsWith('loading')),
        loaded.join('\n'),
      );
    } finally {
      for (const key of ['team-a/hello/dev', 'team-a/hello/prod', 'team-a/other/dev'])
        await target.delete(key).catch(() => {});
      await targets.close();
      for (const name of [...target.imageNames(image), ...target.imageNames(other)])
        spawnSync('podman', ['rmi', '--force', '--ignore', name]);
      await app.close();
      await store.close();
    }
  },
);
