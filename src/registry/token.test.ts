import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { ValveError } from '../errors.js';
import { replyWithError } from '../http/errors.js';
import {
  Registry,
  RegistryTokens,
  acceptRegistryTokens,
  covers,
  grantAccess,
  parseScopes,
  registryRoutes,
  registryTokenRoutes,
  type AccessDecision,
  type RegistryAction,
} from './index.js';

describe('parseScopes', () => {
  test('reads type, name and actions; names may hold colons; duplicates merge', () => {
    assert.deepEqual(
      parseScopes([
        'repository:team/app:pull,push',
        'repository:localhost:5000/team/app:pull registry:catalog:*',
        'repository:team/app:pull',
        'repository(plugin):team/plugin:pull',
      ]),
      [
        { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
        { type: 'repository', name: 'localhost:5000/team/app', actions: ['pull'] },
        { type: 'registry', name: 'catalog', actions: ['*'] },
        { type: 'repository(plugin)', name: 'team/plugin', actions: ['pull'] },
      ],
    );
  });

  test('drops what the grammar does not allow', () => {
    assert.deepEqual(
      parseScopes(['', 'repository', 'repository:team/app', ':team/app:pull', 'Repo:x/y:pull']),
      [],
    );
    assert.deepEqual(parseScopes(['repository:team/app:']), [
      { type: 'repository', name: 'team/app', actions: [] },
    ]);
  });
});

describe('grantAccess', () => {
  const rights: Record<string, RegistryAction[]> = {
    'team-a/app': ['pull', 'push'],
    'team-a/public': ['pull'],
  };
  const asked: string[] = [];
  const caller = (signedIn: boolean) => ({
    signedIn,
    can: async (repo: string, action: RegistryAction) => {
      asked.push(`${repo}:${action}`);
      return rights[repo]?.includes(action) ?? false;
    },
  });

  test('grants only the actions the caller has, and drops what is left empty', async () => {
    const granted = await grantAccess(
      parseScopes([
        'repository:team-a/app:pull,push,delete',
        'repository:team-a/public:pull,push',
        'repository:team-b/app:pull',
        'repository:Not/Valid:pull',
        'plugin:team-a/app:pull',
      ]),
      caller(true),
    );
    assert.deepEqual(granted, [
      { type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] },
      { type: 'repository', name: 'team-a/public', actions: ['pull'] },
    ]);
    assert.ok(!asked.some((a) => a.startsWith('Not/Valid')), 'invalid names are not asked about');
  });

  test('* needs both pull and push; the catalog needs a signed-in caller', async () => {
    const scopes = parseScopes([
      'repository:team-a/app:*',
      'repository:team-a/public:*',
      'registry:catalog:*',
    ]);
    assert.deepEqual(await grantAccess(scopes, caller(true)), [
      { type: 'repository', name: 'team-a/app', actions: ['*'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
    assert.deepEqual(await grantAccess(scopes, caller(false)), [
      { type: 'repository', name: 'team-a/app', actions: ['*'] },
    ]);
  });

  test('covers: by repository and action, * for every action', () => {
    const access = [
      { type: 'repository', name: 'team-a/app', actions: ['pull'] },
      { type: 'repository', name: 'team-a/all', actions: ['*'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ];
    assert.equal(covers(access, 'team-a/app', 'pull'), true);
    assert.equal(covers(access, 'team-a/app', 'push'), false);
    assert.equal(covers(access, 'team-a/all', 'push'), true);
    assert.equal(covers(access, 'team-b/app', 'pull'), false);
    assert.equal(covers(access, 'catalog', 'pull'), false);
  });
});

describe('RegistryTokens', () => {
  const key = randomBytes(32);
  const tokens = new RegistryTokens(key);
  const access = [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }];

  test('a token verifies to its subject, access and expiry', async () => {
    const now = new Date('2026-11-23T12:00:00.500Z');
    const issued = await tokens.issue('alice', access, now);
    assert.equal(issued.expiresIn, 300);
    assert.equal(issued.issuedAt.toISOString(), '2026-11-23T12:00:00.000Z');
    assert.equal(issued.token.split('.').length, 3);
    const claims = await tokens.verify(issued.token, now);
    assert.deepEqual(claims, {
      subject: 'alice',
      access,
      expiresAt: new Date('2026-11-23T12:05:00.000Z'),
    });
    const payload = JSON.parse(
      Buffer.from(issued.token.split('.')[1]!, 'base64url').toString(),
    ) as Record<string, unknown>;
    assert.equal(payload.iss, 'valve');
    assert.equal(payload.aud, 'valve-registry');
    assert.equal(payload.sub, 'alice');
  });

  test('an anonymous token has no subject', async () => {
    const claims = await tokens.verify((await tokens.issue(null, [])).token);
    assert.equal(claims?.subject, null);
    assert.deepEqual(claims?.access, []);
  });

  test('refuses expired tokens, other keys, other audiences, tampered access and alg none', async () => {
    const { token } = await tokens.issue('alice', access);
    const later = new Date(Date.now() + 301_000);
    assert.equal(await tokens.verify(token, later), null, 'expired');

    const otherKey = new RegistryTokens(randomBytes(32));
    assert.equal(await otherKey.verify(token), null, 'signed with another key');

    const otherService = new RegistryTokens(key, 'elsewhere');
    assert.equal(await otherService.verify(token), null, 'for another audience');

    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as {
      access: { name: string }[];
    };
    claims.access[0]!.name = 'team-b/app';
    const tampered = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
    assert.equal(await tokens.verify(tampered), null, 'tampered access');

    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    assert.equal(await tokens.verify(`${none}.${payload}.`), null, 'alg none');
    assert.equal(await tokens.verify('not-a-token'), null);
  });

  test('load makes the key file once, mode 600, and keeps it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'valve-registry-token-'));
    try {
      const first = RegistryTokens.load(dir);
      const file = path.join(dir, 'registry-token.key');
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      const { token } = await first.issue('alice', access);
      assert.ok(await RegistryTokens.load(dir).verify(token), 'a restart keeps tokens valid');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the challenge names an absolute realm, the service and the scope', () => {
    assert.equal(
      tokens.challenge('http://127.0.0.1:7080'),
      'Bearer realm="http://127.0.0.1:7080/auth/registry/token",service="valve-registry"',
    );
    assert.equal(
      tokens.challenge('https://valve.example', { repo: 'team-a/app', action: 'push' }),
      'Bearer realm="https://valve.example/auth/registry/token",service="valve-registry",scope="repository:team-a/app:pull,push"',
    );
  });
});

describe('token flow over HTTP', () => {
  const ALICE = `Basic ${Buffer.from('alice:secret-token').toString('base64')}`;
  const WRONG = `Basic ${Buffer.from('alice:wrong').toString('base64')}`;
  /** alice again, with a password of three dotted parts, as a JWT has. */
  const DOTTED = `Basic ${Buffer.from('alice:my.pass-word.here').toString('base64')}`;
  let dataDir: string;
  let app: FastifyInstance;
  let tokens: RegistryTokens;

  /** alice: pull and push on team-a/*; anyone: pull on team-a/public. */
  const subject = async (request: FastifyRequest) => {
    const header = request.headers.authorization;
    if (header === undefined) return null;
    if (header === ALICE) return 'alice';
    if (header === DOTTED) return 'alice';
    throw new ValveError('AUTH_BAD_CREDENTIALS');
  };
  const authorize = async (
    request: FastifyRequest,
    repo: string,
    action: RegistryAction,
  ): Promise<AccessDecision> => {
    if (repo === 'team-a/public' && action === 'pull') return 'ok';
    let who;
    try {
      who = await subject(request);
    } catch {
      return 'unauthenticated';
    }
    if (!who) return 'unauthenticated';
    return repo.startsWith('team-a/') ? 'ok' : 'denied';
  };

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'valve-registry-token-http-'));
    tokens = new RegistryTokens(randomBytes(32));
    app = Fastify();
    app.setErrorHandler((error, request, reply) => replyWithError(error, request, reply));
    const basic = {
      authenticated: async (request: FastifyRequest) =>
        (await subject(request).catch(() => null)) !== null,
      authorize,
    };
    await app.register(registryTokenRoutes({ tokens, subject, authorize }));
    await app.register(
      registryRoutes(new Registry({ dataDir }), {
        ...acceptRegistryTokens(tokens, basic),
        challenge: (request, scope) =>
          tokens.challenge(`${request.protocol}://${request.headers.host}`, scope),
      }),
    );
  });
  afterEach(async () => {
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  async function tokenFor(authorization: string | null, ...scopes: string[]) {
    const query = new URLSearchParams([
      ['service', 'valve-registry'],
      ...scopes.map((s) => ['scope', s]),
    ]);
    const response = await app.inject({
      method: 'GET',
      url: `/auth/registry/token?${query}`,
      headers: authorization ? { authorization } : {},
    });
    return response;
  }

  async function accessOf(token: string) {
    return (await tokens.verify(token))?.access;
  }

  test('the 401 challenge is Bearer with realm, service and the needed scope', async () => {
    const base = await app.inject({ method: 'GET', url: '/v2/', headers: { host: 'valve:7080' } });
    assert.equal(base.statusCode, 401);
    assert.equal(
      base.headers['www-authenticate'],
      'Bearer realm="http://valve:7080/auth/registry/token",service="valve-registry"',
    );

    const pull = await app.inject({ method: 'GET', url: '/v2/team-a/app/tags/list' });
    assert.equal(pull.statusCode, 401);
    assert.match(
      String(pull.headers['www-authenticate']),
      /^Bearer realm="http:\/\/localhost:80\/auth\/registry\/token",service="valve-registry",scope="repository:team-a\/app:pull"$/,
    );
    assert.deepEqual((pull.json() as { errors: { detail: unknown }[] }).errors[0]!.detail, [
      { Type: 'repository', Name: 'team-a/app', Action: 'pull' },
    ]);
    const push = await app.inject({ method: 'POST', url: '/v2/team-a/app/blobs/uploads/' });
    assert.match(
      String(push.headers['www-authenticate']),
      /scope="repository:team-a\/app:pull,push"$/,
    );
  });

  test('the token endpoint grants only what the caller has', async () => {
    const response = await tokenFor(
      ALICE,
      'repository:team-a/app:pull,push',
      'repository:team-b/app:pull',
      'unknown:thing:do',
    );
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as {
      token: string;
      access_token: string;
      expires_in: number;
      issued_at: string;
    };
    assert.equal(body.access_token, body.token);
    assert.equal(body.expires_in, 300);
    assert.ok(Math.abs(Date.parse(body.issued_at) - Date.now()) < 5000);
    assert.deepEqual(await accessOf(body.token), [
      { type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] },
    ]);
  });

  test('bad credentials get 401; anonymous callers get pull on public repositories only', async () => {
    const wrong = await tokenFor(WRONG, 'repository:team-a/app:pull');
    assert.equal(wrong.statusCode, 401);

    const anonymous = await tokenFor(
      null,
      'repository:team-a/app:pull',
      'repository:team-a/public:pull,push',
      'registry:catalog:*',
    );
    assert.equal(anonymous.statusCode, 200, anonymous.body);
    const { token } = anonymous.json() as { token: string };
    assert.deepEqual(await tokens.verify(token).then((c) => c && [c.subject, c.access]), [
      null,
      [{ type: 'repository', name: 'team-a/public', actions: ['pull'] }],
    ]);

    const otherService = await app.inject({
      method: 'GET',
      url: '/auth/registry/token?service=docker.io',
    });
    assert.equal(otherService.statusCode, 400);
  });

  test('a registry token opens only the repositories and actions it names', async () => {
    const { token } = (await tokenFor(ALICE, 'repository:team-a/app:pull')).json() as {
      token: string;
    };
    const bearer = { authorization: `Bearer ${token}` };
    const base = await app.inject({ method: 'GET', url: '/v2/', headers: bearer });
    assert.equal(base.statusCode, 200);

    const pull = await app.inject({
      method: 'GET',
      url: '/v2/team-a/app/tags/list',
      headers: bearer,
    });
    assert.equal(pull.statusCode, 404, 'allowed through, and the repository is empty');
    assert.equal((pull.json() as { errors: { code: string }[] }).errors[0]!.code, 'NAME_UNKNOWN');

    // Another repository, or push: back to the token endpoint for that scope.
    const other = await app.inject({
      method: 'GET',
      url: '/v2/team-a/other/tags/list',
      headers: bearer,
    });
    assert.equal(other.statusCode, 401);
    assert.match(
      String(other.headers['www-authenticate']),
      /scope="repository:team-a\/other:pull"/,
    );
    const push = await app.inject({
      method: 'POST',
      url: '/v2/team-a/app/blobs/uploads/',
      headers: bearer,
    });
    assert.equal(push.statusCode, 401);
  });

  test('a token given as the Basic password is traded for one covering at most the same', async () => {
    // What a deploy target's podman does with the pull token the server minted for it.
    const minted = await tokens.issue(
      'deploy-target:team-a/box',
      [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }],
      new Date(Date.now() - 100_000),
    );
    const asBasic = (token: string) =>
      `Basic ${Buffer.from(`valve-deploy:${token}`).toString('base64')}`;
    const traded = await tokenFor(
      asBasic(minted.token),
      'repository:team-a/app:pull,push',
      'repository:team-a/other:pull',
    );
    assert.equal(traded.statusCode, 200, traded.body);
    const body = traded.json() as { token: string; expires_in: number };
    const claims = await tokens.verify(body.token);
    assert.equal(claims?.subject, 'deploy-target:team-a/box');
    assert.deepEqual(claims?.access, [
      { type: 'repository', name: 'team-a/app', actions: ['pull'] },
    ]);
    assert.ok(body.expires_in <= 200, `expires in ${body.expires_in} s, not later than the first`);

    const expired = await tokens.issue(
      'deploy-target:team-a/box',
      [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }],
      new Date(Date.now() - 301_000),
    );
    const foreign = await new RegistryTokens(randomBytes(32)).issue('alice', []);
    for (const token of [expired.token, foreign.token]) {
      assert.equal((await tokenFor(asBasic(token), 'repository:team-a/app:pull')).statusCode, 401);
    }
  });

  test('a password shaped like a JWT is still a password', async () => {
    const response = await tokenFor(DOTTED, 'repository:team-a/app:pull');
    assert.equal(response.statusCode, 200, response.body);
    const claims = await tokens.verify((response.json() as { token: string }).token);
    assert.equal(claims?.subject, 'alice');
  });

  test('expired, foreign and tampered tokens are refused; Basic keeps working', async () => {
    const access = [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }];
    const expired = await tokens.issue('alice', access, new Date(Date.now() - 301_000));
    const foreign = await new RegistryTokens(randomBytes(32)).issue('alice', access);
    for (const token of [expired.token, foreign.token, `${expired.token}x`]) {
      const response = await app.inject({
        method: 'GET',
        url: '/v2/team-a/app/tags/list',
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(response.statusCode, 401);
      const base = await app.inject({
        method: 'GET',
        url: '/v2/',
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(base.statusCode, 401);
    }

    const basic = await app.inject({
      method: 'GET',
      url: '/v2/team-a/app/tags/list',
      headers: { authorization: ALICE },
    });
    assert.equal(basic.statusCode, 404);
    const denied = await app.inject({
      method: 'POST',
      url: '/v2/team-b/app/blobs/uploads/',
      headers: { authorization: ALICE },
    });
    assert.equal(denied.statusCode, 403);
  });
});
