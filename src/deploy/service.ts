/**
 * The deploy subsystem's front: environments of an app, deploys, promotions, rollbacks,
 * approvals, history and targets. It composes the pieces, each in its own file: the reconciler
 * (compare, health, sync), promotions (deploy-repo commits and approvals) and the targets a
 * team was given. See README.md in this folder.
 */
import type { Kysely } from 'kysely';
import { isMap, isScalar, parseDocument } from 'yaml';
import { ValveError, notFound } from '../errors.js';
import type { EventBus } from '../events.js';
import { listFilesAt, logCommits, readFileAt, runGit, type GitService } from '../git/index.js';
import { now } from '../store/index.js';
import { APP_SPEC_FILE, parseAppSpec, type AppSpec } from './appspec.js';
import { resourceHealth, resourceId, type DiffItem } from './diff.js';
import type { DeployTables } from './migrations.js';
import {
  Promotions,
  approvalView,
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
  parsePolicy,
  type ReconcilerOptions,
  type SyncPolicy,
  type SyncStatus,
} from './reconciler.js';
import {
  TargetRegistry,
  type SecretSealer,
  type TargetFactory,
  type TargetInput,
  type TargetView,
} from './targets-registry.js';
import type { ImageSource, Target, TargetLogger, WorkloadStatus } from './targets/target.js';

export { deployRepoPath };

export interface SyncView {
  id: string;
  /** Deploy-repo commit synced (the one that last changed the environment's folder). */
  commit: string;
  sourceCommit: string | null;
  image: string | null;
  trigger: string | null;
  actor: string | null;
  /** running | succeeded | failed | drifted */
  status: string;
  message: string | null;
  startedAt: string;
  finishedAt: string | null;
}

export interface EnvironmentView {
  name: string;
  url: string | null;
  health: WorkloadStatus['health'];
  syncStatus: SyncStatus;
  /** Image reference with digest that was last applied: the environment's version. */
  image: string | null;
  digest: string | null;
  /** Source commit of the image applied; null while nothing is deployed. */
  sourceCommit: string | null;
  /** Deploy-repo commit last applied; null while nothing is deployed. */
  deployCommit: string | null;
  /**
   * Deploy-repo commit that last changed the environment's folder (what is desired); null
   * while it has no folder.
   */
  desiredCommit: string | null;
  /** Null while nothing is deployed. */
  deployedAt: string | null;
  /** Last reconcile error (with file and line), why it waits, or the target's note. */
  message: string | null;
  target: string;
  sync: SyncPolicy;
  drift: string[];
  instances: WorkloadStatus['instances'];
  /** A canary or blue-green rollout under way or just ended, as the target reports it. */
  rollout: WorkloadStatus['rollout'] | null;
  lastSync: SyncView | null;
  /**
   * Deploys, promotions and rollbacks into it wait for a member of `team` (`approval` of the
   * environment in valve.yaml on the source repo's main branch); null: they need none.
   */
  approval: { team: string; timeoutMinutes: number } | null;
  /** The change into it that waits for the approving team, if one does. */
  pendingApproval: ApprovalView | null;
}

export interface ResourceView {
  resource: string;
  kind: string;
  name: string;
  file: string;
  line: number;
  health: WorkloadStatus['health'];
  status: 'Synced' | 'OutOfSync';
}

export interface DiffView {
  environment: string;
  syncStatus: SyncStatus;
  desiredCommit: string | null;
  deployCommit: string | null;
  /** Set when desired cannot be read (file and line) or the target is not the team's. */
  error: string | null;
  resources: ResourceView[];
  items: DiffItem[];
  drift: string[];
}

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

/** Settings read from the server's environment: VALVE_DEPLOY_POLL_SECONDS, VALVE_LOCAL_TARGET_TEAMS. */
export function deploySettingsFromEnv(
  env: NodeJS.ProcessEnv,
): Pick<DeployServiceOptions, 'pollIntervalMs' | 'localTargetTeams'> {
  const settings: Pick<DeployServiceOptions, 'pollIntervalMs' | 'localTargetTeams'> = {};
  const poll = env.VALVE_DEPLOY_POLL_SECONDS;
  if (poll !== undefined && poll !== '') {
    const seconds = Number(poll);
    if (!Number.isFinite(seconds) || seconds <= 0)
      throw new Error(
        `environment variable VALVE_DEPLOY_POLL_SECONDS: expected a positive number, got "${poll}"`,
      );
    settings.pollIntervalMs = seconds * 1000;
  }
  const teams = env.VALVE_LOCAL_TARGET_TEAMS;
  if (teams !== undefined && teams.trim() !== '')
    settings.localTargetTeams = teams
      .split(',')
      .map((team) => team.trim())
      .filter(Boolean);
  return settings;
}

const sourceRepoPath = (team: string, app: string) => `${team}/${app}.git`;
/** Team and app names (auth's and apps' slug): anything else names no repo. */
const NAME = /^[a-z0-9][a-z0-9-]{0,38}$/;
/** Commits of valve.yaml looked back through for one that reads, while main's is broken. */
const SPEC_LOOKBACK = 20;

/** What the environments view takes from valve.yaml. */
interface SpecEnvironments {
  /** Environment names in the order valve.yaml lists them. */
  order: string[];
  approvals: Map<string, { team: string; timeoutMinutes: number }>;
}

/** Throws FileValidationError for a spec that does not validate. */
function specEnvironments(text: string): SpecEnvironments {
  const spec = parseAppSpec(text, APP_SPEC_FILE);
  // The document's order: an object puts names that read as numbers ("1") first.
  const listed = parseDocument(text).get('environments');
  const order = isMap(listed)
    ? listed.items.map((pair) => String(isScalar(pair.key) ? pair.key.value : pair.key))
    : Object.keys(spec.environments);
  const approvals = new Map<string, { team: string; timeoutMinutes: number }>();
  for (const [name, env] of Object.entries(spec.environments))
    if (env.approval)
      approvals.set(name, { team: env.approval.team, timeoutMinutes: env.approval.timeoutMinutes });
  return { order, approvals };
}

export class DeployService {
  readonly targets: TargetRegistry;
  private readonly reconciler: Reconciler;
  private readonly promotions: Promotions;
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
    const known = await this.rows(team, app);
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

  private rows(team: string, app: string) {
    return this.options.db
      .selectFrom('deploy_environments')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .orderBy('created_at')
      .orderBy('name')
      .execute();
  }

  /**
   * The app's environments in valve.yaml's order (on the source repo's main branch), then
   * those it does not list (a folder added to the deploy repo by hand) by name.
   */
  async environments(team: string, app: string): Promise<EnvironmentView[]> {
    const [rows, spec, pending] = await Promise.all([
      this.rows(team, app),
      this.currentSpecEnvironments(team, app),
      this.pendingApprovals(team, app),
    ]);
    const lastSyncs = await this.options.db
      .selectFrom('deploy_syncs')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('status', '!=', 'drifted')
      .orderBy('started_at', 'desc')
      .limit(200)
      .execute();
    // The reconciler records an environment without a folder at the repo's head, which is
    // another environment's commit: such an environment has nothing desired. One without a
    // folder runs nothing or is out of sync, so while all run and are synced, no git look.
    const folders = rows.some((row) => !row.applied_image || row.sync_status !== 'Synced')
      ? await this.environmentFolders(team, app)
      : null;
    const position = (name: string) => {
      const at = spec?.order.indexOf(name) ?? -1;
      return at < 0 ? Number.MAX_SAFE_INTEGER : at;
    };
    const ordered = [...rows].sort(
      (a, b) => position(a.name) - position(b.name) || a.name.localeCompare(b.name),
    );
    return Promise.all(
      ordered.map(async (row) => {
        const targetName = row.target ?? 'local';
        let live: WorkloadStatus;
        try {
          live = await (
            await this.targets.resolve(team, targetName)
          ).status(`${row.app_key}/${row.name}`);
        } catch (error) {
          live = missingStatus(row.app_key, error instanceof Error ? error.message : String(error));
        }
        const last = lastSyncs.find((sync) => sync.environment === row.name);
        // Nothing deployed: no version, and no commit, source or time of one.
        const deployed = row.applied_image !== null;
        return {
          name: row.name,
          url: live.url,
          health: live.health,
          syncStatus: row.sync_status as SyncStatus,
          image: row.applied_image,
          digest: row.applied_image
            ? row.applied_image.slice(row.applied_image.indexOf('@') + 1)
            : null,
          sourceCommit: deployed ? row.source_commit : null,
          deployCommit: deployed ? row.applied_commit : null,
          desiredCommit: !folders || folders.has(row.name) ? row.desired_commit : null,
          deployedAt: deployed ? row.deployed_at : null,
          message: row.message ?? live.message,
          target: targetName,
          sync: parsePolicy(row.sync_policy),
          drift: row.drift ? (JSON.parse(row.drift) as string[]) : [],
          instances: live.instances,
          rollout: live.rollout ?? null,
          lastSync: last ? syncView(last) : null,
          approval: spec?.approvals.get(row.name) ?? null,
          pendingApproval: pending.find((a) => a.environment === row.name) ?? null,
        };
      }),
    );
  }

  /**
   * Teams whose members may read the app's environments without being in its team: those
   * named by an environment's `approval` in valve.yaml (on main), and those a pending
   * approval waits for. Empty for a name that is no app's.
   */
  async approvingTeams(team: string, app: string): Promise<string[]> {
    if (!NAME.test(team) || !NAME.test(app)) return [];
    if ((await this.rows(team, app)).length === 0) return [];
    const [spec, pending] = await Promise.all([
      this.currentSpecEnvironments(team, app),
      this.pendingApprovals(team, app),
    ]);
    return [
      ...new Set([
        ...[...(spec?.approvals.values() ?? [])].map((approval) => approval.team),
        ...pending.map((approval) => approval.team),
      ]),
    ];
  }

  /**
   * valve.yaml's environments as the source repo's main branch has them, or while it is broken
   * as the last commit that could be read had them; null when there is none.
   */
  private async currentSpecEnvironments(
    team: string,
    app: string,
  ): Promise<SpecEnvironments | null> {
    const gitDir = this.options.git.pathOf(sourceRepoPath(team, app));
    const read = async (rev: string) => {
      const content = await readFileAt(gitDir, rev, APP_SPEC_FILE);
      if (!content) return null;
      try {
        return specEnvironments(content.toString());
      } catch {
        return null; // broken: the pipeline reports it with file and line
      }
    };
    const atMain = await read('refs/heads/main');
    if (atMain) return atMain;
    for (const commit of await logCommits(gitDir, 'refs/heads/main', {
      limit: SPEC_LOOKBACK,
      path: APP_SPEC_FILE,
    })) {
      const earlier = await read(commit.sha);
      if (earlier) return earlier;
    }
    return null;
  }

  /** Approvals still waiting (read only: past their time they count as expired already). */
  private async pendingApprovals(team: string, app: string): Promise<ApprovalView[]> {
    const rows = await this.options.db
      .selectFrom('deploy_approvals')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('status', '=', 'pending')
      .where('expires_at', '>', now())
      .orderBy('requested_at', 'desc')
      .execute();
    return rows.map(approvalView);
  }

  /** Names of the environments that have a folder in the deploy repo at main. */
  private async environmentFolders(team: string, app: string): Promise<Set<string>> {
    const gitDir = this.options.git.pathOf(deployRepoPath(team, app));
    const paths = await listFilesAt(gitDir, 'refs/heads/main', 'envs');
    return new Set(paths.map((path) => path.split('/')[1]!));
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
    const { observation, items, live } = result;
    const { row, desired } = observation;
    const outOfSync = new Set(items.map((item) => item.resource));
    const liveIds = new Set(live.map(resourceId));
    const resources: ResourceView[] = [
      ...(observation.error ? [] : (desired?.resources ?? [])),
      ...live.filter((r) => items.some((i) => i.prune && i.resource === resourceId(r))),
    ].map((resource) => ({
      resource: resourceId(resource),
      kind: resource.kind,
      name: resource.name,
      file: resource.file,
      line: resource.line,
      health: observation.live
        ? resourceHealth(resource, observation.live, liveIds.has(resourceId(resource)))
        : 'missing',
      status: outOfSync.has(resourceId(resource)) ? 'OutOfSync' : 'Synced',
    }));
    return {
      environment: name,
      syncStatus: observation.error
        ? 'Unknown'
        : items.length > 0 || row.sync_status === 'OutOfSync'
          ? 'OutOfSync'
          : (row.sync_status as SyncStatus),
      // No folder: nothing desired (the row holds the repo's head then, another's commit).
      desiredCommit: observation.revision?.sha ?? null,
      deployCommit: row.applied_image ? row.applied_commit : null,
      error: observation.error?.message ?? null,
      resources,
      items,
      drift: row.drift ? (JSON.parse(row.drift) as string[]) : [],
    };
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
      const row = (await this.rows(team, app)).find((r) => r.name === environment);
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

function missingStatus(key: string, message: string): WorkloadStatus {
  return {
    key,
    health: 'missing',
    url: null,
    image: null,
    imageReference: null,
    desiredReplicas: 0,
    readyReplicas: 0,
    instances: [],
    message,
    drift: [],
  };
}

function syncView(row: DeployTables['deploy_syncs']): SyncView {
  return {
    id: row.id,
    commit: row.commit,
    sourceCommit: row.source_commit,
    image: row.image,
    trigger: row.trigger,
    actor: row.actor,
    status: row.status,
    message: row.message,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}
