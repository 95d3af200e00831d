import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { EventBus } from '../events.js';
import { FileValidationError } from '../formats/yaml.js';
import { listFilesAt, readFileAt, resolveRef, type GitService } from '../git/index.js';
import { newId } from '../ids.js';
import { now } from '../store/index.js';
import type { AppSpec } from './appspec.js';
import { readEnvironmentManifests, type EnvironmentManifests } from './manifests.js';
import type { DeployTables } from './migrations.js';
import { renderEnvironment } from './render.js';
import type { ImageSource, Target, WorkloadSpec, WorkloadStatus } from './targets/target.js';

export interface EnvironmentView {
  name: string;
  url: string | null;
  health: WorkloadStatus['health'];
  image: string | null;
  sourceCommit: string | null;
  deployCommit: string | null;
  deployedAt: string | null;
  message: string | null;
  instances: WorkloadStatus['instances'];
}

export interface DeployServiceOptions {
  db: Kysely<DeployTables>;
  git: GitService;
  events: EventBus;
  target: Target;
  images: ImageSource;
  /** How often every environment is re-checked even without a push (drift, missed events). */
  pollIntervalMs?: number;
  log?: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

export const deployRepoPath = (team: string, app: string) => `${team}/${app}.deploy.git`;
const envDir = (environment: string) => `envs/${environment}`;
const appKey = (team: string, app: string) => `${team}/${app}`;

/**
 * Environments and the reconciler: desired state is the deploy repo at its newest commit,
 * live state is what the target runs; a difference is applied, a broken manifest is recorded
 * as the environment's message and the live version is left untouched.
 */
export class DeployService {
  private readonly queues = new Map<string, { running: boolean; again: boolean }>();
  private poller: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly options: DeployServiceOptions) {}

  async start(): Promise<void> {
    await this.options.target.recover();
    this.unsubscribe = this.options.events.on('git.refUpdated', (event) => {
      const match = /^([^/]+)\/([^/]+)\.deploy\.git$/.exec(event.repoPath);
      if (match && event.ref === 'refs/heads/main') void this.reconcileApp(match[1]!, match[2]!);
    });
    const poll = async () => {
      const rows = await this.options.db
        .selectFrom('deploy_environments')
        .select(['app_key', 'name'])
        .execute();
      for (const row of rows) {
        const [team = '', app = ''] = row.app_key.split('/');
        this.schedule(team, app, row.name);
      }
    };
    await poll();
    this.poller = setInterval(() => void poll(), this.options.pollIntervalMs ?? 30_000);
    this.poller.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.poller);
    this.unsubscribe?.();
    await this.options.target.close();
  }

  /** Creates the deploy repo with one folder per environment. */
  async createEnvironments(
    team: string,
    app: string,
    environments: string[],
    actor: string,
  ): Promise<void> {
    const repo = deployRepoPath(team, app);
    await this.options.git.createRepo(repo);
    const changes: Record<string, { content: string }> = {
      'README.md': {
        content:
          `# ${app}: deploy repo\n\nRendered Kubernetes manifests per environment, written by Valve.\n` +
          `Every deploy, promotion and rollback is a commit here. Folders: ${environments.map((e) => `\`${envDir(e)}/\``).join(', ')}.\n`,
      },
    };
    for (const environment of environments)
      changes[`${envDir(environment)}/.keep`] = { content: '' };
    await this.options.git.commit(
      repo,
      {
        branch: 'main',
        changes,
        message: `create environments ${environments.join(', ')}`,
        author: { name: actor, email: `${actor}@valve` },
      },
      actor,
    );
    const rows = environments.map((name) => ({
      app_key: appKey(team, app),
      name,
      applied_commit: null,
      applied_image: null,
      applied_hash: null,
      source_commit: null,
      deployed_at: null,
      message: null,
      created_at: now(),
    }));
    await this.options.db.insertInto('deploy_environments').values(rows).execute();
  }

  /** Records a new version in the deploy repo: one commit, rendered manifests of one environment. */
  async deployImage(input: {
    team: string;
    app: string;
    environment: string;
    spec: AppSpec;
    image: string;
    sourceCommit: string;
    actor: string;
  }): Promise<string> {
    const files = renderEnvironment({ ...input });
    const dir = envDir(input.environment);
    const changes = Object.fromEntries(
      Object.entries(files).map(([name, content]) => [`${dir}/${name}`, { content }]),
    );
    const digest = input.image.slice(input.image.indexOf('@') + 1);
    return this.options.git.commit(
      deployRepoPath(input.team, input.app),
      {
        branch: 'main',
        changes,
        message:
          `deploy ${input.app} to ${input.environment}: ${digest.slice(0, 19)}\n\n` +
          `Image: ${input.image}\nSource-Commit: ${input.sourceCommit}\nDeployed-By: ${input.actor}\n`,
        author: { name: input.actor, email: `${input.actor}@valve` },
      },
      input.actor,
    );
  }

  async environments(team: string, app: string): Promise<EnvironmentView[]> {
    const rows = await this.options.db
      .selectFrom('deploy_environments')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .orderBy('created_at')
      .execute();
    return Promise.all(
      rows.map(async (row) => {
        const live = await this.options.target.status(`${row.app_key}/${row.name}`);
        return {
          name: row.name,
          url: live.url,
          health: live.health,
          image: row.applied_image,
          sourceCommit: row.source_commit,
          deployCommit: row.applied_commit,
          deployedAt: row.deployed_at,
          message: row.message ?? live.message,
          instances: live.instances,
        };
      }),
    );
  }

  /** Resolves once the environment runs the given deploy commit; throws when its sync failed. */
  async waitForSync(
    team: string,
    app: string,
    environment: string,
    commit: string,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<EnvironmentView> {
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      options.signal?.throwIfAborted();
      const sync = await this.options.db
        .selectFrom('deploy_syncs')
        .select(['status', 'message'])
        .where('app_key', '=', appKey(team, app))
        .where('environment', '=', environment)
        .where('commit', '=', commit)
        .where('status', 'in', ['succeeded', 'failed'])
        .orderBy('started_at', 'desc')
        .executeTakeFirst();
      if (sync?.status === 'failed') throw new Error(sync.message ?? 'sync failed');
      if (sync?.status === 'succeeded') {
        const views = await this.environments(team, app);
        return views.find((v) => v.name === environment)!;
      }
      if (Date.now() > deadline)
        throw new Error(`environment ${environment} did not sync ${commit.slice(0, 7)} in time`);
      await this.nextUpdate(appKey(team, app), environment, 1000);
    }
  }

  /** Resolves at the environment's next `deploy.updated` event, or after `timeoutMs`. */
  private nextUpdate(key: string, environment: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        off();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      const off = this.options.events.on('deploy.updated', (event) => {
        if (event.appId === key && event.environment === environment) done();
      });
    });
  }

  async reconcileApp(team: string, app: string): Promise<void> {
    const rows = await this.options.db
      .selectFrom('deploy_environments')
      .select('name')
      .where('app_key', '=', appKey(team, app))
      .execute();
    for (const row of rows) this.schedule(team, app, row.name);
  }

  /** One reconcile per environment at a time; a request during one runs once more after it. */
  private schedule(team: string, app: string, environment: string): void {
    const key = `${appKey(team, app)}/${environment}`;
    const state = this.queues.get(key) ?? { running: false, again: false };
    this.queues.set(key, state);
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    void (async () => {
      do {
        state.again = false;
        try {
          await this.reconcileEnvironment(team, app, environment);
        } catch (error) {
          this.options.log?.warn({ err: error, key }, 'reconcile failed');
        }
      } while (state.again);
      state.running = false;
    })();
  }

  private async reconcileEnvironment(
    team: string,
    app: string,
    environment: string,
  ): Promise<void> {
    const key = `${appKey(team, app)}/${environment}`;
    const gitDir = this.options.git.pathOf(deployRepoPath(team, app));
    const commit = await resolveRef(gitDir, 'refs/heads/main');
    if (!commit) return;
    const row = await this.options.db
      .selectFrom('deploy_environments')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('name', '=', environment)
      .executeTakeFirst();
    if (!row) return;

    let manifests: EnvironmentManifests;
    try {
      const paths = (await listFilesAt(gitDir, commit, envDir(environment))).filter((p) =>
        /\.ya?ml$/.test(p),
      );
      const files = await Promise.all(
        paths.map(async (path) => ({
          path,
          text: (await readFileAt(gitDir, commit, path))!.toString(),
        })),
      );
      manifests = readEnvironmentManifests(files);
    } catch (error) {
      if (!(error instanceof FileValidationError)) throw error;
      // Desired state is unreadable: say where, and leave what runs alone.
      await this.recordSync(
        team,
        app,
        environment,
        commit,
        'failed',
        `deploy repo: ${error.message}`,
      );
      return;
    }

    const { sourceCommit } = manifests;
    const first = manifests.workloads[0];
    const workload: WorkloadSpec | undefined = first && { key, ...first };
    const live = await this.options.target.status(key);
    if (!workload) {
      if (live.health !== 'missing') await this.options.target.delete(key);
      if (row.applied_commit !== commit)
        await this.markApplied(team, app, environment, commit, null, null, null);
      return;
    }
    const hash = createHash('sha256').update(JSON.stringify(workload)).digest('hex');
    const inSync =
      row.applied_hash === hash &&
      live.image === workload.image.digest &&
      live.health !== 'missing';
    if (inSync) {
      if (row.applied_commit !== commit)
        await this.markApplied(team, app, environment, commit, workload, hash, sourceCommit);
      return;
    }
    if (!(await this.options.images.getManifest(workload.image.repo, workload.image.digest))) {
      await this.recordSync(
        team,
        app,
        environment,
        commit,
        'failed',
        `image ${workload.image.reference} is not in the registry`,
      );
      return;
    }
    const syncId = await this.recordSync(
      team,
      app,
      environment,
      commit,
      'running',
      `applying ${workload.image.digest.slice(0, 19)}`,
    );
    try {
      await this.options.target.apply(workload, (message) =>
        this.options.log?.info({ key }, message),
      );
    } catch (error) {
      await this.finishSync(
        syncId,
        team,
        app,
        environment,
        'failed',
        error instanceof Error ? error.message : String(error),
      );
      return;
    }
    await this.markApplied(team, app, environment, commit, workload, hash, sourceCommit);
    await this.finishSync(syncId, team, app, environment, 'succeeded', null);
  }

  private async markApplied(
    team: string,
    app: string,
    environment: string,
    commit: string,
    workload: WorkloadSpec | null,
    hash: string | null,
    sourceCommit: string | null,
  ) {
    await this.options.db
      .updateTable('deploy_environments')
      .set({
        applied_commit: commit,
        applied_image: workload?.image.reference ?? null,
        applied_hash: hash,
        source_commit: sourceCommit,
        deployed_at: now(),
        message: null,
      })
      .where('app_key', '=', appKey(team, app))
      .where('name', '=', environment)
      .execute();
    this.options.events.emit('deploy.updated', { appId: appKey(team, app), environment });
  }

  private async recordSync(
    team: string,
    app: string,
    environment: string,
    commit: string,
    status: 'running' | 'failed',
    message: string,
  ): Promise<string> {
    const id = newId('sync');
    await this.options.db
      .insertInto('deploy_syncs')
      .values({
        id,
        app_key: appKey(team, app),
        environment,
        commit,
        status,
        message,
        started_at: now(),
        finished_at: status === 'failed' ? now() : null,
      })
      .execute();
    await this.setMessage(team, app, environment, message);
    return id;
  }

  private async finishSync(
    id: string,
    team: string,
    app: string,
    environment: string,
    status: string,
    message: string | null,
  ) {
    await this.options.db
      .updateTable('deploy_syncs')
      .set({ status, message, finished_at: now() })
      .where('id', '=', id)
      .execute();
    await this.setMessage(team, app, environment, message);
  }

  private async setMessage(team: string, app: string, environment: string, message: string | null) {
    await this.options.db
      .updateTable('deploy_environments')
      .set({ message })
      .where('app_key', '=', appKey(team, app))
      .where('name', '=', environment)
      .execute();
    this.options.events.emit('deploy.updated', { appId: appKey(team, app), environment });
  }

  /** Sync history of an environment, newest first. */
  async history(team: string, app: string, environment: string, limit = 50) {
    return this.options.db
      .selectFrom('deploy_syncs')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('environment', '=', environment)
      .orderBy('started_at', 'desc')
      .limit(limit)
      .execute();
  }
}
