/**
 * The deploy subsystem's front: environments of an app, deploys, promotions, rollbacks,
 * approvals, history and targets. It composes the pieces, each in its own file: the reconciler
 * (compare, health, sync), promotions (deploy-repo commits and approvals), the environments'
 * views (environment-views.ts) and the targets a team was given. See README.md in this folder.
 */
import type { Kysely } from 'kysely';
import { ValveError, notFound } from '../errors.js';
import type { EventBus } from '../events.js';
import { readFileAt, runGit, type GitService } from '../git/index.js';
import { APP_SPEC_FILE, parseAppSpec, type AppSpec } from './appspec.js';
import {
  EnvironmentViews,
  diffView,
  syncView,
  type DiffView,
  type EnvironmentView,
  type SyncView,
} from './environment-views.js';
import type { DeployTables } from './migrations.js';
import {
  Promotions,
  type ApprovalView,
  type ChangeResult,
  type DeployRecord,
  type PromotionOptions,
} from './promotion.js';
import {
  Reconciler,
  appKey,
  deployRepoPath,
  envDir,
  insertEnvironment,
  type ReconcilerOptions,
} from './reconciler.js';
import {
  TargetRegistry,
  type SecretSealer,
  type TargetFactory,
  type TargetInput,
  type TargetView,
} from './targets-registry.js';
import type { ImageSource, Target, TargetLogger } from './targets/target.js';

export { deployRepoPath };
export type { DiffView, EnvironmentView, ResourceView, SyncView } from './environment-views.js';

export interface DeployServiceOptions {
  db: Kysely<DeployTables>;
  git: GitService;
  events: EventBus;
  /** The built-in local target. */
  target: Target;
  images: ImageSource;
  /** host:port clients pull images from (image references in the deploy repo). */
  registryHost?: () => string;
  /** Seals the tokens of registered targets (the pipelines' SecretCipher). */
  cipher?: SecretSealer;
  /** Teams given the local target; absent: every team. */
  localTargetTeams?: string[] | null;
  dataDir?: string;
  /** First port for target drivers that publish ports on this host (podman). */
  portBase?: number;
  /** Target drivers by kind (tests); others load from targets/<kind>/. */
  drivers?: Partial<Record<'podman' | 'kubernetes', TargetFactory>>;
  /** How often every environment is re-checked even without a push (drift, missed events). */
  pollIntervalMs?: number;
  /** Values of secrets that workloads' variables reference (the pipelines' SecretStore). */
  secrets?: ReconcilerOptions['secrets'];
  /** Whether a team exists: approvals for one that does not are refused (PromotionOptions). */
  teamExists?: PromotionOptions['teamExists'];
  log?: TargetLogger;
}

const sourceRepoPath = (team: string, app: string) => `${team}/${app}.git`;

export class DeployService {
  readonly targets: TargetRegistry;
  private readonly reconciler: Reconciler;
  private readonly promotions: Promotions;
  private readonly views: EnvironmentViews;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly options: DeployServiceOptions) {
    this.targets = new TargetRegistry({
      db: options.db,
      local: options.target,
      cipher: options.cipher,
      localTeams: options.localTargetTeams,
      dataDir: options.dataDir,
      portBase: options.portBase,
      images: options.images,
      logger: options.log,
      drivers: options.drivers,
    });
    this.views = new EnvironmentViews({
      db: options.db,
      git: options.git,
      targets: this.targets,
      sourceRepoPath,
    });
    this.promotions = new Promotions({
      db: options.db,
      git: options.git,
      images: options.images,
      registryHost: options.registryHost ?? (() => 'localhost'),
      sourceRepoPath,
      teamExists: options.teamExists,
    });
    this.reconciler = new Reconciler({
      db: options.db,
      git: options.git,
      events: options.events,
      targets: this.targets,
      images: options.images,
      pollIntervalMs: options.pollIntervalMs,
      onPoll: () => this.promotions.expireApprovals(),
      secrets: options.secrets,
      log: options.log,
    });
  }

  /** Re-adopts what runs, then reconciles every environment; instances keep running throughout. */
  async start(): Promise<void> {
    await this.options.target.recover();
    await this.promotions.recoverApprovals();
    // valve.yaml gaining an environment on the source repo's main branch makes it one here.
    this.unsubscribe = this.options.events.on('git.refUpdated', (event) => {
      const match = /^([^/]+)\/([^/]+)\.git$/.exec(event.repoPath);
      if (!match || match[2]!.endsWith('.deploy') || event.ref !== 'refs/heads/main') return;
      if (!event.after) return;
      void this.addSpecEnvironments(match[1]!, match[2]!, event.after).catch((error: unknown) =>
        this.options.log?.warn({ err: error, repo: event.repoPath }, 'could not read environments'),
      );
    });
    await this.reconciler.start();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.reconciler.stop();
    await this.targets.close();
  }

  private async addSpecEnvironments(team: string, app: string, commit: string) {
    const known = await this.views.rows(team, app);
    if (known.length === 0) return; // not an app (yet)
    const content = await readFileAt(
      this.options.git.pathOf(sourceRepoPath(team, app)),
      commit,
      APP_SPEC_FILE,
    );
    if (!content) return;
    let spec: AppSpec;
    try {
      spec = parseAppSpec(content.toString(), APP_SPEC_FILE);
    } catch {
      return; // the pipeline reports a broken spec, with file and line
    }
    const names = new Set(known.map((row) => row.name));
    for (const name of Object.keys(spec.environments)) {
      if (names.has(name)) continue;
      await insertEnvironment(this.options.db, team, app, name);
      this.options.events.emit('deploy.updated', { appId: appKey(team, app), environment: name });
    }
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
    for (const name of environments) await insertEnvironment(this.options.db, team, app, name);
  }

  /**
   * A pipeline's deploy step: one commit with the rendered manifests of one environment
   * (`deploy <env>: <app>@<digest> (source <commit>)`). Approval is the pipeline's own gate.
   */
  async deployImage(input: {
    team: string;
    app: string;
    environment: string;
    spec: AppSpec;
    image: string;
    sourceCommit: string;
    actor: string;
  }): Promise<string> {
    return this.promotions.commit(
      input.team,
      input.app,
      {
        kind: 'deploy',
        environment: input.environment,
        image: input.image,
        sourceCommit: input.sourceCommit,
      },
      input.actor,
      null,
      input.spec,
    );
  }

  // ---- environments ----

  /** The app's environments in valve.yaml's order, then those it does not list (by name). */
  environments(team: string, app: string): Promise<EnvironmentView[]> {
    return this.views.environments(team, app);
  }

  /** Teams whose members may read the app's environments without being in its team. */
  approvingTeams(team: string, app: string): Promise<string[]> {
    return this.views.approvingTeams(team, app);
  }

  async environment(team: string, app: string, name: string): Promise<EnvironmentView> {
    const found = (await this.environments(team, app)).find((env) => env.name === name);
    if (!found)
      throw new ValveError('DEPLOY_ENV_UNKNOWN', `environment ${name} of ${team}/${app} not found`);
    return found;
  }

  /** Desired against live, per resource and field. */
  async diff(team: string, app: string, name: string): Promise<DiffView> {
    const result = await this.reconciler.diff(team, app, name);
    if (!result)
      throw new ValveError('DEPLOY_ENV_UNKNOWN', `environment ${name} of ${team}/${app} not found`);
    return diffView(name, result);
  }

  /** A sync asked for by a user: applies even when automatic sync is off; waits for it. */
  async sync(
    team: string,
    app: string,
    name: string,
    actor: string,
    options: { prune?: boolean } = {},
  ): Promise<{ environment: EnvironmentView; sync: SyncView | null }> {
    await this.environment(team, app, name);
    const started = new Date().toISOString();
    await this.reconciler.refresh(team, app, name, { prune: options.prune ?? true, actor });
    const sync = await this.options.db
      .selectFrom('deploy_syncs')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('environment', '=', name)
      .where('started_at', '>=', started)
      .where('status', '!=', 'drifted')
      .orderBy('started_at', 'desc')
      .executeTakeFirst();
    return {
      environment: await this.environment(team, app, name),
      sync: sync ? syncView(sync) : null,
    };
  }

  /** Reconciles every environment of the app now (e.g. after a commit). */
  reconcileApp(team: string, app: string): Promise<void> {
    return this.reconciler.refreshApp(team, app);
  }

  /** Runs the reconciler's poll now (or waits for the one under way), e.g. for a bench. */
  pollNow(): Promise<void> {
    return this.reconciler.pollNow();
  }

  // ---- changes ----

  deploy(
    team: string,
    app: string,
    env: string,
    image: string,
    actor: string,
  ): Promise<ChangeResult> {
    return this.promotions.deploy(team, app, env, image, actor);
  }

  promote(
    team: string,
    app: string,
    from: string,
    to: string,
    actor: string,
  ): Promise<ChangeResult> {
    return this.promotions.promote(team, app, from, to, actor);
  }

  async rollback(
    team: string,
    app: string,
    env: string,
    to: { commit?: string; stepsBack?: number },
    actor: string,
  ): Promise<ChangeResult> {
    await this.environment(team, app, env);
    return this.promotions.rollback(team, app, env, to, actor);
  }

  /** Deploys (from Git: commit, digest, source, author, time) and syncs of an environment, newest first. */
  async history(
    team: string,
    app: string,
    env: string,
    limit = 50,
  ): Promise<{ deploys: (DeployRecord & { live: boolean })[]; syncs: SyncView[] }> {
    const view = await this.environment(team, app, env);
    const deploys = await this.promotions.history(team, app, env, limit);
    const syncs = await this.options.db
      .selectFrom('deploy_syncs')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('environment', '=', env)
      .orderBy('started_at', 'desc')
      .limit(limit)
      .execute();
    return {
      deploys: deploys.map((d) => ({ ...d, live: d.commit === view.deployCommit })),
      syncs: syncs.map(syncView),
    };
  }

  approvals(team: string, app: string, filter?: { status?: string; teams?: string[] }) {
    return this.promotions.approvals(team, app, filter);
  }

  async approval(team: string, app: string, id: string): Promise<ApprovalView> {
    const found = await this.promotions.approval(team, app, id);
    if (!found) throw notFound(`approval ${id}`);
    return found;
  }

  decide(input: Parameters<Promotions['decide']>[0]): Promise<ApprovalView> {
    return this.promotions.decide(input);
  }

  // ---- targets ----

  listTargets(team: string): Promise<TargetView[]> {
    return this.targets.list(team);
  }

  addTarget(team: string, input: TargetInput, actor: string): Promise<TargetView> {
    return this.targets.add(team, input, actor);
  }

  async removeTarget(team: string, name: string): Promise<void> {
    const using = await this.options.db
      .selectFrom('deploy_environments')
      .select(['app_key', 'name'])
      .where('app_key', 'like', `${team}/%`)
      .where('target', '=', name)
      .execute();
    await this.targets.remove(
      team,
      name,
      using.map((row) => `${row.app_key.slice(team.length + 1)}/${row.name}`),
    );
  }

  // ---- waiting (the pipeline's deploy step) ----

  /** Resolves once the environment runs the given deploy commit; throws when its sync failed. */
  async waitForSync(
    team: string,
    app: string,
    environment: string,
    commit: string,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<EnvironmentView> {
    const deadline = Date.now() + options.timeoutMs;
    const gitDir = this.options.git.pathOf(deployRepoPath(team, app));
    void this.reconciler.refresh(team, app, environment);
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
      const view = await this.environment(team, app, environment);
      if (sync?.status === 'succeeded') return view;
      // A commit that left the folder as it was: synced once a later head is.
      const row = (await this.views.rows(team, app)).find((r) => r.name === environment);
      if (
        row?.sync_status === 'Synced' &&
        row.synced_head &&
        (await isAncestor(gitDir, commit, row.synced_head))
      )
        return view;
      if (row?.desired_commit === commit && row.sync_status === 'OutOfSync' && !view.sync.automated)
        throw new Error(
          `${environment} syncs manually: the commit waits for \`valve sync\` (POST .../sync)`,
        );
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
}

async function isAncestor(gitDir: string, ancestor: string, of: string): Promise<boolean> {
  const { code } = await runGit(gitDir, ['merge-base', '--is-ancestor', ancestor, of], {
    okCodes: [1, 128],
  });
  return code === 0;
}
