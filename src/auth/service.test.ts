import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ValveError } from '../errors.js';
import { openStore } from '../store/index.js';
import { authMigrations } from './migrations.js';
import { AuthService } from './service.js';

const dir = mkdtempSync(join(tmpdir(), 'valve-auth-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('signup, roles, pending membership, tokens and sessions survive a reopen of the store', async () => {
  const file = join(dir, 'valve.db');
  let store = await openStore(file, [authMigrations]);
  let auth = new AuthService(store.db);
  const alice = await auth.signup({ username: 'alice', password: 'long enough', team: 'dev' });
  assert.equal(alice.role, 'admin');
  const bob = await auth.signup({ username: 'bob', password: 'long enough', team: 'dev' });
  assert.equal(bob.status, 'pending');
  await assert.rejects(
    auth.signup({ username: 'alice', password: 'x'.repeat(9), team: 'ops' }),
    (e: unknown) => e instanceof ValveError && e.code === 'AUTH_USERNAME_TAKEN',
  );
  await assert.rejects(
    auth.checkPassword('alice', 'wrong password'),
    (e: unknown) => e instanceof ValveError && e.code === 'AUTH_BAD_CREDENTIALS',
  );
  const principal = await auth.checkPassword('alice', 'long enough');
  const { token } = await auth.createToken(principal.userId, 'cli');
  const { sessionId } = await auth.createSession(principal.userId);
  assert.equal(
    await auth.roleIn(bob.userId, alice.teamId),
    null,
    'pending members have no role yet',
  );
  await auth.setMembership(alice.teamId, 'bob', { status: 'active' });
  assert.equal(await auth.roleIn(bob.userId, alice.teamId), 'developer');
  await store.close();

  store = await openStore(file, [authMigrations]);
  auth = new AuthService(store.db);
  assert.equal((await auth.principalFromToken(token))?.username, 'alice');
  assert.equal(
    await auth.principalFromToken(token, 'bob'),
    null,
    'a token only works with its owner',
  );
  assert.equal((await auth.principalFromSession(sessionId))?.username, 'alice');
  assert.equal(await auth.principalFromToken('vlv_not-a-token'), null);
  await assert.rejects(
    auth.requireRole({ userId: bob.userId, username: 'bob', via: 'token' }, alice.teamId, 'admin'),
    /needs the admin role/,
  );
  await store.close();
});
