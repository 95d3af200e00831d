/**
 * `valve server`: composes the subsystems into one process. Each subsystem mounts its own
 * routes; this file only builds them, wires their events, and starts and stops them in order.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyRequest } from 'fastify';
import pino from 'pino';
import {
  AppService,
  appMigrations,
  appRoutes,
  sourceRepoPath,
  type AppRecord,
} from './apps/index.js';
import { AuthService, authMigrations, authRoutes, type Role } from './auth/index.js';
import { buildRoutes } from './build/index.js';
import type { ValveConfig } from './config.js';
import { consoleRoutes } from './console/routes.js';
import {
  DeployService,
  deployMigrations,
  deployRoutes,
  deploySettingsFromEnv,
  registryPullDrivers,
} from './deploy/index.js';
import { LocalTarget } from './deploy/targets/local/index.js';
import { ValveError } from './errors.js';
import { EventBus } from './events.js';
import { GitService, gitRoutes } from './git/index.js';
import { replyWithError } from './http/errors.js';
import { principalOf, requirePrincipal } from './http/principal.js';
import {
  PipelineService,
  RunLogStore,
  SecretCipher,
  SecretStore,
  createExecutors,
  externalRoutes,
  pipelineMigrations,
  pipelineRoutes,
} from './pipelines/index.js';
import {
  Registry,
  RegistryTokens,
  acceptRegistryTokens,
  bearerRegistryToken,
  registryAdminRoutes,
  registryRoutes,
  registryTokenRoutes,
  type RegistryRoutesOptions,
} from './registry/index.js';
import {
  ImageCatalog,
  PushLog,
  catalogRoutes,
  recordPipelinePushes,
  registryCatalogMigrations,
  type RunningRun,
} from './registry/catalog/index.js';
import { openStore } from './store/index.js';

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

// From src/server.ts (tsx) and from dist/server.js alike, the built console is <root>/dist/web.
const consoleDist = fileURLToPath(new URL('../dist/web/', import.meta.url));

export async function startServer(config: ValveConfig): Promise<RunningServer> {
  mkdirSync(config.dataDir, { recursive: true });
  mkdirSync(join(config.dataDir, 'logs'), { recursive: true });
  const log = pino(
    { level: process.env.VALVE_LOG_LEVEL ?? 'info' },
    pino.destination({ dest: join(config.dataDir, 'logs', 'valve.log'), mkdir: true }),
  );
  const store = await openStore(join(config.dataDir, 'valve.db'), [
    authMigrations,
    appMigrations,
    deployMigrations,
    pipelineMigrations,
    registryCatalogMigrations,
  ]);
  const events = new EventBus();
  const auth = new AuthService(store.db);
  const teamExists = async (name: string) => (await auth.teamByName(name)) !== undefined;
  const git = new GitService(join(config.dataDir, 'git'), events);
  const registry = new Registry({
    dataDir: config.dataDir,
    storage: config.registryStorage,
    gc: config.registryGc,
  });
  const imagePushes = new PushLog(store.db);
  const target = new LocalTarget({
    dataDir: config.dataDir,
    portBase: config.appPortBase,
    images: registry,
    logger: log,
  });
  let registryHost = `${config.host}:${config.port}`;
  const cipher = SecretCipher.load(config.dataDir);
  const registryTokens = RegistryTokens.load(config.dataDir);
  const deploy = new DeployService({
    db: store.db,
    git,
    events,
    target,
    images: registry,
    registryHost: () => registryHost,
    cipher,
    // Variables of an app spec may reference its secrets (valve secrets set).
    secrets: { resolve: (team, app, names) => secrets.resolve(team, app, names) },
    dataDir: config.dataDir,
    // Registered podman targets publish from here up; the local target uses appPortBase up.
    portBase: config.appPortBase + 1000,
    // They pull from this registry with a token per repository, minted here.
    drivers: registryPullDrivers({
      host: () => registryHost,
      pullToken: async (repo, { team, name }) =>
        (
          await registryTokens.issue(`deploy-target:${team}/${name}`, [
            { type: 'repository', name: repo, actions: ['pull'] },
          ])
        ).token,
    }),
    teamExists,
    log,
    ...deploySettingsFromEnv(process.env),
  });
  const apps = new AppService(store.db, auth, git, deploy);
  const logs = new RunLogStore(join(config.dataDir, 'runs'), events);
  const secrets = new SecretStore(store.db, cipher);
  const appRef = (app: AppRecord) => ({
    id: app.id,
    team: app.team,
    name: app.name,
    defaultBranch: app.default_branch,
  });
  const pipelines = new PipelineService({
    db: store.db,
    events,
    logs,
    executors: await createExecutors({ kubeconfig: process.env.VALVE_KUBECONFIG, log }),
    services: {
      git,
      // Images the build step stores are recorded as pushed by the run building that commit.
      registry: recordPipelinePushes(
        registry,
        imagePushes,
        async (team, name): Promise<RunningRun[]> => {
          const app = await apps.find(team, name);
          const running = app ? await pipelines.list([app.id], { status: 'running' }) : [];
          return running.map((run) => ({ ...run, commit: run.commit_sha }));
        },
      ),
      deploy,
      registryHost: () => registryHost,
    },
    secrets,
    workspaceRoot: join(config.dataDir, 'workspaces'),
    storageRoot: join(config.dataDir, 'pipelines'),
    maxParallelRuns: config.maxParallelRuns,
    maxParallelJobs: config.maxParallelJobs,
    sourceGitDir: (team, app) => git.pathOf(sourceRepoPath(team, app)),
    listApps: async () => (await apps.all()).map(appRef),
    teamExists,
    log,
  });

  // A push to an app's source repo is what starts its pipelines.
  events.on('git.refUpdated', (event) => {
    if (event.source !== 'push' || event.after === null) return;
    void (async () => {
      const app = await apps.bySourceRepo(event.repoPath);
      if (!app) return;
      await pipelines.onPush({
        app: appRef(app),
        gitDir: git.pathOf(event.repoPath),
        ref: event.ref,
        before: event.before,
        commit: event.after!,
        pusher: event.pusher,
      });
    })().catch((error: unknown) =>
      log.error({ err: error, event }, 'could not start runs for a push'),
    );
  });

  const server = Fastify({
    loggerInstance: log,
    bodyLimit: 1024 * 1024,
    disableRequestLogging: true,
  });
  server.setErrorHandler((error, request, reply) => replyWithError(error, request, reply));
  const appAccess = async (request: FastifyRequest, team: string, app: string, minimum: Role) =>
    appRef(await apps.access(await requirePrincipal(auth, request), team, app, minimum));
  const baseUrl = (request: FastifyRequest) =>
    `${request.protocol}://${request.headers.host ?? registryHost}`;

  /** Throws unless the caller has at least `minimum` role in the team (404 for non-members). */
  const teamAccess = async (request: FastifyRequest, team: string, minimum: Role) => {
    const found = await auth.teamByName(team);
    if (!found) throw new ValveError('NOT_FOUND', `team ${team} not found`);
    await auth.requireRole(await requirePrincipal(auth, request), found.id, minimum);
  };

  await server.register(authRoutes(auth));
  await server.register(appRoutes({ apps, auth, deploy, pipelines, baseUrl }));
  await server.register(
    deployRoutes({
      deploy,
      principal: (request) => requirePrincipal(auth, request),
      appAccess: async (request, team, app, minimum) =>
        apps.access(await requirePrincipal(auth, request), team, app, minimum),
      teamAccess,
      isMember: (principal, team) => auth.isMember(principal, team),
    }),
  );
  await server.register(
    pipelineRoutes({
      pipelines,
      logs,
      events,
      secrets,
      appAccess,
      principal: (request) => requirePrincipal(auth, request),
      visibleApps: async (request) =>
        (await apps.listFor(await requirePrincipal(auth, request))).map(appRef),
      teamAccess,
      isMember: (principal, team) => auth.isMember(principal, team),
    }),
  );
  await server.register(
    externalRoutes({
      db: store.db,
      cipher,
      pipelines,
      appAccess,
      findApp: async (team, name) => {
        const app = await apps.find(team, name);
        return app && appRef(app);
      },
      sourceGitDir: (team, app) => git.pathOf(sourceRepoPath(team, app)),
    }),
  );
  await server.register(
    gitRoutes({
      git,
      principalOf: (request) => principalOf(auth, request),
      authorize: (principal, team, repo, access) =>
        apps.authorizeGit(principal, team, repo, access),
    }),
  );
  // Registry clients authenticate with Basic (username + API token) or, after a Bearer
  // challenge, with a token from the registry's token endpoint; both end at authorizeImage.
  const imageAccess: Pick<RegistryRoutesOptions, 'authenticated' | 'authorize'> = {
    authenticated: async (request) => {
      try {
        return (await principalOf(auth, request)) !== null;
      } catch (error) {
        if (error instanceof ValveError && error.status === 401) return false;
        throw error;
      }
    },
    authorize: async (request, repo, action) => {
      let principal;
      try {
        principal = await principalOf(auth, request);
      } catch {
        return 'unauthenticated';
      }
      return apps.authorizeImage(principal, repo, action);
    },
  };
  await server.register(
    registryTokenRoutes({
      tokens: registryTokens,
      subject: async (request) => (await principalOf(auth, request))?.username ?? null,
      authorize: imageAccess.authorize,
    }),
  );
  await server.register(
    registryRoutes(registry, {
      ...acceptRegistryTokens(registryTokens, imageAccess),
      challenge: (request, scope) => registryTokens.challenge(baseUrl(request), scope),
      onManifestPushed: async (request, pushed) => {
        // A registry token names its user; Basic and API tokens make a principal.
        const token = bearerRegistryToken(request);
        const pushedBy = token
          ? ((await registryTokens.verify(token))?.subject ?? null)
          : ((await principalOf(auth, request))?.username ?? null);
        await imagePushes.record({ ...pushed, pushedBy, via: 'registry' });
      },
    }),
  );
  await server.register(
    catalogRoutes({
      catalog: new ImageCatalog(registry, imagePushes),
      authorize: async (request, repo, action) =>
        apps.authorizeImage(await principalOf(auth, request), repo, action),
      teamAccess,
    }),
  );
  await server.register(registryAdminRoutes({ registry, auth, admins: config.admins }));
  // Rootfs tarball imports: whoever may push a repository through the registry may import.
  await server.register(
    buildRoutes({
      registry,
      authorizePush: async (request, repo) =>
        apps.authorizeImage(await principalOf(auth, request), repo, 'push'),
    }),
  );
  await server.register(consoleRoutes({ distDir: consoleDist }));

  await deploy.start();
  await server.listen({ host: config.host, port: config.port });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  registryHost = `${config.host}:${port}`;
  await pipelines.start();
  const url = `http://${registryHost}`;
  log.info({ url, dataDir: config.dataDir }, 'valve server started');

  return {
    url,
    async close() {
      await pipelines.stop();
      await server.close();
      await deploy.stop();
      await store.close();
      log.flush();
    },
  };
}
