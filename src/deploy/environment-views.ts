/**
 * What the API shows of an app's environments: each one's view (version, health, sync status,
 * instances, URL, last sync, the approving team and the approval waiting) in valve.yaml's
 * order; `approvingTeams` (whose members read the environments without being in the app's
 * team); an environment's diff (desired against live, per resource, with health). valve.yaml
 * is read on the source repo's main branch, or while it is broken at the last commit that
 * reads; live facts come from each environment's target.
 */
import type { Kysely } from 'kysely';
import { isMap, isScalar, parseDocument } from 'yaml';
import { listFilesAt, logCommits, readFileAt, type GitService } from '../git/index.js';
import { APP_SPEC_FILE, parseAppSpec } from './appspec.js';
import { resourceHealth, resourceId, type DiffItem } from './diff.js';
import { pendingApprovals, type ApprovalView } from './deploy-approvals.js';
import type { DeployTables } from './migrations.js';
import {
  appKey,
  deployRepoPath,
  parsePolicy,
  type Reconciler,
  type SyncPolicy,
  type SyncStatus,
  type TargetResolver,
} from './reconciler.js';
import { missingStatus } from './targets/shared/workload-status.js';
import type { WorkloadStatus } from './targets/target.js';

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

export interface EnvironmentViewsOptions {
  db: Kysely<DeployTables>;
  git: GitService;
  /** The targets environments run on (their live status). */
  targets: TargetResolver;
  /** An app's source repo under the git root (apps' convention: `team/app.git`). */
  sourceRepoPath: (team: string, app: string) => string;
}

export class EnvironmentViews {
  constructor(private readonly options: EnvironmentViewsOptions) {}

  /** The app's `deploy_environments` rows, oldest first. */
  rows(team: string, app: string) {
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
      pendingApprovals(this.options.db, team, app),
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
            await this.options.targets.resolve(team, targetName)
          ).status(`${row.app_key}/${row.name}`);
        } catch (error) {
          live = missingStatus(
            `${row.app_key}/${row.name}`,
            error instanceof Error ? error.message : String(error),
          );
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
      pendingApprovals(this.options.db, team, app),
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
    const gitDir = this.options.git.pathOf(this.options.sourceRepoPath(team, app));
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

  /** Names of the environments that have a folder in the deploy repo at main. */
  private async environmentFolders(team: string, app: string): Promise<Set<string>> {
    const gitDir = this.options.git.pathOf(deployRepoPath(team, app));
    const paths = await listFilesAt(gitDir, 'refs/heads/main', 'envs');
    return new Set(paths.map((path) => path.split('/')[1]!));
  }
}

/** What `Reconciler.diff` found: the observation, the live resources, the items that differ. */
export type EnvironmentDiff = NonNullable<Awaited<ReturnType<Reconciler['diff']>>>;

/** The API's diff of an environment: `Reconciler.diff`'s result per resource, with health. */
export function diffView(name: string, result: EnvironmentDiff): DiffView {
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

export function syncView(row: DeployTables['deploy_syncs']): SyncView {
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
