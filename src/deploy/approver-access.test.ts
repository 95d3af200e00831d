/**
 * The deploy API as members of the approving team see it when they are not in the app's team:
 * they read the environments (list, one, diff, history) and decide approvals, but do not
 * deploy, promote, roll back or sync (403, saying why); a user in neither team gets 404, as
 * for any other app of another team. Real routes (fastify inject), real git and database; the
 * target and the registry are stand-ins (nothing needs to run here).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { roles, type Principal, type Role } from '../auth/index.js';
import { ValveError, forbidden, notFound } from '../errors.js';
import { EventBus } from '../events.js';
import { GitService, logCommits } from '../git/index.js';
import { replyWithError } from '../http/errors.js';
import { openStore, type Store } from '../store/index.js';
import { deployMigrations } from './migrations.js';
import { deployRoutes } from './routes.js';
import { DeployService } from './service.js';
import { FakeImages, FakeTarget, createAppRepo } from './testing.js';

const appSpec = `apiVersion: score.dev/v1b1
metadata:
  name: hello
containers:
  web:
    image: .
environments:
  dev: {}
  prod:
    approval: { team: ops }
`;

/** Who is in which team: ada and vic are the app's team, olga approves prod, sam is elsewhere. */
const teams: Record<string, Record<string, Role>> = {
  ada: { dev: 'developer' },
  vic: { dev: 'viewer' },
  olga: { ops: 'viewer' },
  sam: { web: 'admin' },
};

let dir: string;
let store: Store;
let git: GitService;
let deploy: DeployService;
let server: FastifyInstance;
const images = new FakeImages();
images.add('v1', '1'.repeat(40));

const principalOf = (username: string | undefined): Principal => {
  if (!username || !teams[username]) throw new ValveError('AUTH_REQUIRED', 'sign in first');
  return { userId: username, username, via: 'token' };
};
const roleOf = (username: string, team: string) => teams[username]?.[team] ?? null;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'valve-approver-access-'));
  store = await openStore(join(dir, 'valve.db'), [deployMigrations]);
  const events = new EventBus();
  git = new GitService(join(dir, 'git'), events);
  await createAppRepo(git, 'dev/hello', appSpec, 'ada');
  deploy = new DeployService({
    db: store.db,
    git,
    events,
    target: new FakeTarget(),
    images,
    registryHost: () => 'registry.test:7080',
    pollIntervalMs: 3_600_000,
    teamExists: async (name) => Object.values(teams).some((roles) => name in roles),
  });
  await deploy.createEnvironments('dev', 'hello', ['dev', 'prod'], 'ada');

  server = Fastify();
  server.setErrorHandler((error, request, reply) => replyWithError(error, request, reply));
  const principal = async (request: { headers: Record<string, unknown> }) =>
    principalOf(request.headers['x-user'] as string | undefined);
  await server.register(
    deployRoutes({
      deploy,
      principal,
      // As the apps service does: the app's team only; 404 for other teams, 403 below the role.
      appAccess: async (request, team, app, minimum) => {
        const { username } = await principal(request);
        const role = roleOf(username, team);
        if (team !== 'dev' || app !== 'hello' || role === null)
          throw notFound(`app ${team}/${app}`);
        if (roles.indexOf(role) < roles.indexOf(minimum)) throw forbidden(`needs ${minimum}`);
        return { team, name: app };
      },
      teamAccess: async (request, team, minimum) => {
        const { username } = await principal(request);
        const role = roleOf(username, team);
        if (role === null) throw notFound(`team ${team}`);
        if (roles.indexOf(role) < roles.indexOf(minimum)) throw forbidden(`needs ${minimum}`);
      },
      isMember: async (who, team) => roleOf(who.username, team) !== null,
    }),
  );
  await server.ready();
});

after(async () => {
  await server?.close();
  await deploy?.stop();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function call(user: string | null, method: 'GET' | 'POST', url: string, body?: object) {
  const response = await server.inject({
    method,
    url,
    headers: user ? { 'x-user': user } : {},
    ...(method === 'POST' ? { payload: body ?? {} } : {}),
  });
  return {
    status: response.statusCode,
    body: response.json<Record<string, unknown> & { error?: { code: string; message: string } }>(),
  };
}

const app = '/api/apps/dev/hello';
const reads = [
  `${app}/environments`,
  `${app}/environments/prod`,
  `${app}/environments/prod/diff`,
  `${app}/environments/prod/history`,
  `${app}/environments/dev`,
  `${app}/environments/dev/history`,
];
const writes: [string, object][] = [
  [`${app}/environments/dev/deploy`, { image: 'v1' }],
  [`${app}/environments/prod/deploy`, { image: 'v1' }],
  [`${app}/promote`, { from: 'dev', to: 'prod' }],
  [`${app}/environments/dev/rollback`, { stepsBack: 1 }],
  [`${app}/environments/dev/sync`, {}],
];
const deployHead = async () =>
  (await logCommits(git.pathOf('dev/hello.deploy.git'), 'refs/heads/main', { limit: 1 }))[0]!.sha;

describe('members of the approving team outside the app team', () => {
  test('read the environments, their diff and history', async () => {
    for (const url of reads) {
      const answer = await call('olga', 'GET', url);
      assert.equal(answer.status, 200, `${url}: ${JSON.stringify(answer.body)}`);
    }
    const list = await call('olga', 'GET', `${app}/environments`);
    const envs = list.body as unknown as { name: string; approval: { team: string } | null }[];
    assert.deepEqual(
      envs.map((env) => [env.name, env.approval?.team ?? null]),
      [
        ['dev', null],
        ['prod', 'ops'],
      ],
    );
    const approvals = await call('olga', 'GET', `${app}/approvals`);
    assert.equal(approvals.status, 200, 'no request yet: an empty list, not a 404');
    assert.deepEqual(approvals.body, []);
  });

  test('are refused every change, with the reason, and nothing is committed', async () => {
    const head = await deployHead();
    for (const [url, body] of writes) {
      const answer = await call('olga', 'POST', url, body);
      assert.equal(answer.status, 403, `${url}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error?.code, 'AUTH_FORBIDDEN');
      assert.match(answer.body.error!.message, /members of team ops approve changes to dev\/hello/);
    }
    assert.equal(await deployHead(), head);
  });

  test('decide the approval the app team asked for', async () => {
    const deployed = await call('ada', 'POST', `${app}/environments/dev/deploy`, { image: 'v1' });
    assert.equal(deployed.status, 201, JSON.stringify(deployed.body));
    const asked = await call('ada', 'POST', `${app}/promote`, { from: 'dev', to: 'prod' });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    const id = (asked.body.approval as { id: string }).id;

    const prod = await call('olga', 'GET', `${app}/environments/prod`);
    assert.equal((prod.body.pendingApproval as { id: string } | null)?.id, id);
    const pending = await call('olga', 'GET', `${app}/approvals?status=pending`);
    assert.deepEqual(
      (pending.body as unknown as { id: string }[]).map((a) => a.id),
      [id],
    );
    assert.equal((await call('olga', 'GET', `${app}/approvals/${id}`)).status, 200);

    // The app's own developer is not in team ops: 403, and it stays pending.
    const byAda = await call('ada', 'POST', `${app}/approvals/${id}/approve`);
    assert.equal(byAda.status, 403, JSON.stringify(byAda.body));
    const approved = await call('olga', 'POST', `${app}/approvals/${id}/approve`, {
      comment: 'ship it',
    });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.equal(approved.body.status, 'approved');
    assert.equal(approved.body.decidedBy, 'olga');
    assert.equal(approved.body.commit, await deployHead());
    const history = await call('olga', 'GET', `${app}/environments/prod/history`);
    const deploys = history.body.deploys as { kind: string; approvedBy: string | null }[];
    assert.deepEqual(
      deploys.map((d) => [d.kind, d.approvedBy]),
      [
        ['promote', 'olga'],
        ['create', null],
      ],
    );
  });
});

describe('everyone else', () => {
  test('a user in neither team gets 404 for reads, changes and approvals', async () => {
    const asked = await call('ada', 'POST', `${app}/environments/prod/deploy`, { image: 'v1' });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    const id = (asked.body.approval as { id: string }).id;
    for (const url of [...reads, `${app}/approvals`, `${app}/approvals/${id}`]) {
      const answer = await call('sam', 'GET', url);
      assert.equal(answer.status, 404, `${url}: ${JSON.stringify(answer.body)}`);
    }
    for (const [url, body] of [
      ...writes,
      [`${app}/approvals/${id}/approve`, {}] as [string, object],
      [`${app}/approvals/${id}/reject`, {}] as [string, object],
    ]) {
      const answer = await call('sam', 'POST', url, body);
      assert.equal(answer.status, 404, `${url}: ${JSON.stringify(answer.body)}`);
    }
    assert.equal((await call(null, 'GET', `${app}/environments`)).status, 401);
  });

  test("approvers of one app see nothing of another, nor of a name that is no app's", async () => {
    for (const url of [
      '/api/apps/dev/other/environments',
      '/api/apps/ops/hello/environments',
      '/api/apps/dev/hello.deploy/environments',
    ]) {
      const answer = await call('olga', 'GET', url);
      assert.equal(answer.status, 404, `${url}: ${JSON.stringify(answer.body)}`);
    }
    assert.equal((await call('olga', 'POST', '/api/apps/dev/other/promote', {})).status, 404);
  });

  test("the app team's viewer reads but does not change", async () => {
    for (const url of reads) assert.equal((await call('vic', 'GET', url)).status, 200, url);
    for (const [url, body] of writes) {
      const answer = await call('vic', 'POST', url, body);
      assert.equal(answer.status, 403, url);
      assert.doesNotMatch(answer.body.error!.message, /approve/);
    }
  });
});

describe('an approving team that does not exist', () => {
  test('refuses the change, naming valve.yaml line and field; nothing committed or asked', async () => {
    // Whoever signed up first as "ghost" would otherwise approve and read prod's deploys.
    await git.commit(
      'dev/hello.git',
      {
        branch: 'main',
        changes: {
          'valve.yaml': { content: appSpec.replace('team: ops', 'team: ghost') },
        },
        message: 'prod approved by ghost',
        author: { name: 'ada', email: 'ada@valve' },
      },
      'ada',
    );
    const head = await deployHead();
    const before = await call('ada', 'GET', `${app}/approvals?status=pending`);
    const answer = await call('ada', 'POST', `${app}/environments/prod/deploy`, { image: 'v1' });
    assert.equal(answer.status, 409, JSON.stringify(answer.body));
    assert.equal(answer.body.error?.code, 'DEPLOY_APPROVAL_TEAM_UNKNOWN');
    assert.match(
      answer.body.error!.message,
      /^valve\.yaml:10:\d+: environments\.prod\.approval\.team: team ghost does not exist/,
    );
    assert.equal(await deployHead(), head);
    const pending = await call('ada', 'GET', `${app}/approvals?status=pending`);
    assert.deepEqual(pending.body, before.body);
    // An environment without approval deploys as before.
    const dev = await call('ada', 'POST', `${app}/environments/dev/deploy`, { image: 'v1' });
    assert.equal(dev.status, 201, JSON.stringify(dev.body));
  });
});
