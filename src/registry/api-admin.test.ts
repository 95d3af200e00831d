import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { AuthService, authMigrations } from '../auth/index.js';
import { replyWithError } from '../http/errors.js';
import { openStore, type Store } from '../store/index.js';
import { Registry, registryAdminRoutes } from './index.js';

const sha256 = (data: string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

describe('registry admin API', () => {
  let dataDir: string;
  let store: Store;
  let app: FastifyInstance;
  let registry: Registry;
  const tokens: Record<string, string> = {};

  const call = (user: string | null, method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown) =>
    app.inject({
      method,
      url,
      headers: user ? { authorization: `Bearer ${tokens[user]}` } : {},
      ...(body === undefined ? {} : { payload: body as object }),
    });

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-registry-admin-'));
    store = await openStore(path.join(dataDir, 'valve.db'), [authMigrations]);
    const auth = new AuthService(store.db);
    for (const [username, team] of [
      ['root', 'ops'],
      ['alice', 'team-a'],
      ['bob', 'team-b'],
    ] as const) {
      const { userId } = await auth.signup({ username, password: 'x'.repeat(10), team });
      tokens[username] = (await auth.createToken(userId, 'test')).token;
    }
    registry = new Registry({ dataDir });
    app = Fastify();
    app.setErrorHandler((error, request, reply) => replyWithError(error, request, reply));
    await app.register(registryAdminRoutes({ registry, auth, admins: ['root'] }));
    await registry.putRepositoryBlob('team-a/app', Buffer.from('a layer'), sha256('a layer'));
  });
  after(async () => {
    await app?.close();
    await store?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test('garbage collection: server admins only; a dry run changes nothing', async () => {
    assert.equal((await call(null, 'POST', '/api/registry/gc', {})).statusCode, 401);
    const refused = await call('alice', 'POST', '/api/registry/gc', {});
    assert.equal(refused.statusCode, 403);
    assert.match(refused.json().error.message, /VALVE_ADMINS/);

    const dryRun = await call('root', 'POST', '/api/registry/gc', { dryRun: true });
    assert.equal(dryRun.statusCode, 200);
    assert.equal(dryRun.json().dryRun, true);
    assert.deepEqual(dryRun.json().deletedBlobs, []); // the layer is within the grace period
    const run = await call('root', 'POST', '/api/registry/gc', {});
    assert.equal(run.statusCode, 200);
    assert.equal(run.json().dryRun, false);
    assert.equal((await call('root', 'POST', '/api/registry/gc', { dry: 1 })).statusCode, 400);
  });

  test('quota: members read their team, server admins read and set any', async () => {
    const url = '/api/teams/team-a/registry-quota';
    const read = await call('alice', 'GET', url);
    assert.equal(read.statusCode, 200);
    assert.deepEqual(read.json(), { team: 'team-a', usedBytes: 7, quotaBytes: null, blobs: 1 });
    assert.equal((await call('bob', 'GET', url)).statusCode, 404, 'not a member: no such team');
    assert.equal((await call('root', 'GET', url)).statusCode, 200);
    assert.equal((await call(null, 'GET', url)).statusCode, 401);

    const selfService = await call('alice', 'PUT', url, { bytes: 1 << 30 });
    assert.equal(selfService.statusCode, 403);
    const set = await call('root', 'PUT', url, { bytes: 5 });
    assert.equal(set.statusCode, 200);
    assert.deepEqual(set.json(), { team: 'team-a', usedBytes: 7, quotaBytes: 5, blobs: 1 });
    assert.equal((await call('alice', 'GET', url)).json().quotaBytes, 5);
    assert.equal((await call('root', 'PUT', url, { bytes: -1 })).statusCode, 400);
    assert.equal((await call('root', 'PUT', url, {})).statusCode, 400);
    assert.equal(
      (await call('root', 'PUT', '/api/teams/nobody/registry-quota', { bytes: 1 })).statusCode,
      404,
    );
    const cleared = await call('root', 'PUT', url, { bytes: null });
    assert.equal(cleared.json().quotaBytes, null);
  });
});
