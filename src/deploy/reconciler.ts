/**
 * The reconciler, as three steps: compare (desired = the deploy repo's `main`, rendered back
 * by manifests.ts; live = the target's status), health (the target's, per resource) and sync
 * (`planSync` decides, `Reconciler` carries it out). One pass per environment at a time; a
 * pass runs on every deploy-repo commit and on a poll, so missed events and drift are found.
 * A failure (unreadable manifest, unregistered target, failed rollout) is stored as the
 * environment's message and a sync row, never thrown; the live version is left alone.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { ValveError } from '../errors.js';
import type { EventBus } from '../events.js';
import { FileValidationError } from '../formats/yaml.js';
import {
  listFilesAt,
  logCommits,
  openObjectReader,
  readBranchHead,
  type CommitInfo,
  type GitService,
} from '../git/index.js';
import { newId } from '../ids.js';
import { now } from '../store/index.js';
import { defaultSyncOptions, type SyncOptions } from './appspec.js';
import { canonical, diffResources, liveResources, type ManifestResource } from './diff.js';
import { readDesiredEnvironment, type DesiredWorkload } from './manifests.js';
import type { DeployTables } from './migrations.js';
import type { ImageSource, Target, WorkloadSpec, WorkloadStatus } from './targets/target.js';

export const syncStatuses = ['Synced', 'OutOfSync', 'Unknown'] as const;
export type SyncStatus = (typeof syncStatuses)[number];

/** What started a sync (the `trigger` of a `deploy_syncs` row). */
export const syncTriggers = [
  'auto', // a deploy-repo commit applied automatically (a deploy, or an edit by hand)
  'manual', // POST .../sync
  'promote',
  'rollback',
  'self-heal', // drift repaired
  'prune', // the workload was removed from the deploy repo
] as const;
export type SyncTrigger = (typeof syncTriggers)[number];

/**
 * `environments.<env>.sync` of valve.yaml, carried in the deploy repo: `automated` applies
 * every change (off: `OutOfSync` until a manual sync), `selfHeal` repairs drift found by a poll
 * (with `automated`), `prune` deletes what the deploy repo no longer has.
 */
export type SyncPolicy = SyncOptions;
export const defaultSyncPolicy: SyncPolicy = defaultSyncOptions;

/** What the target runs for an environment: the desired workload without its key, target and policy. */
export type DesiredWorkloadSpec = Omit<DesiredWorkload, 'key' | 'target' | 'sync'>;

/** What an environment's folder of the deploy repo asks for. */
export interface DesiredState {
  resources: ManifestResource[];
  /** Null when the folder has no Deployment. */
  workload: DesiredWorkloadSpec | null;
  /** Name of the target (`local`, or one the team registered). */
  target: string;
  policy: SyncPolicy;
  sourceCommit: string | null;
}

export const envDir = (environment: string) => `envs/${environment}`;
export const appKey = (team: string, app: string) => `${team}/${app}`;
export const deployRepoPath = (team: string, app: string) => `${team}/${app}.deploy.git`;

/** Reads an environment's manifest files into the desired state; throws FileValidationError naming file and line. */
export function readDesiredState(files: { path: string; text: string }[], key = ''): DesiredState {
  const { resources, workload, sourceCommit } = readDesiredEnvironment(files, key);
  if (!workload)
    return { resources, workload: null, target: 'local', policy: defaultSyncPolicy, sourceCommit };
  const { key: _key, target, sync, ...spec } = workload;
  return {
    resources,
    workload: spec,
    target: target || 'local',
    policy: { ...defaultSyncPolicy, ...sync },
    sourceCommit: sourceCommit || null,
  };
}

/** Fingerprint of a desired state: the workload as the target gets it, and every manifest. */
export function desiredHash(key: string, desired: DesiredState): string {
  const state = {
    workload: desired.workload && { key, ...desired.workload },
    target: desired.target,
    resources: desired.resources.map((r) => ({ kind: r.kind, name: r.name, object: r.object })),
  };
  return createHash('sha256').update(canonical(state)).digest('hex');
}

// ---- sync decisions (pure) ----

export interface PlanInput {
  desired: { hash: string; workload: Pick<WorkloadSpec, 'image' | 'replicas'> | null };
  /** Hash last applied (null: never, or the last apply failed); hash of a failed sync. */
  applied: { hash: string | null; failedHash: string | null };
  live: Pick<WorkloadStatus, 'health' | 'image' | 'desiredReplicas'> & { drift?: string[] };
  policy: SyncPolicy;
  /** A sync a user asked for: applies even when automatic sync is off. */
  manual: { prune: boolean } | null;
}

export interface SyncPlan {
  status: SyncStatus;
  /** apply: bring the target to desired; repair: fix drift; delete: prune; record: nothing to run, note the new revision. */
  action: 'none' | 'record' | 'apply' | 'repair' | 'delete';
  drift: string[];
  /** Why nothing is done although out of sync. */
  reason: string | null;
}

const short = (digest: string | null) => (digest ? digest.slice(0, 19) : 'nothing');

/** What differs between the workload as applied and what the target runs now. */
export function detectDrift(
  workload: Pick<WorkloadSpec, 'image' | 'replicas'>,
  live: PlanInput['live'],
): string[] {
  // An apply under way (a rollout, or instances re-adopted after a restart) is not drift.
  if (live.health === 'progressing') return [];
  const drift = [...(live.drift ?? [])];
  if (live.health === 'missing' && !live.image) return [...drift, 'the workload is not running'];
  if (live.image !== workload.image.digest)
    drift.push(`runs ${short(live.image)} instead of ${short(workload.image.digest)}`);
  if (live.desiredReplicas !== workload.replicas)
    drift.push(`${live.desiredReplicas} replicas instead of ${workload.replicas}`);
  return drift;
}

export function planSync(input: PlanInput): SyncPlan {
  const { desired, applied, live, policy, manual } = input;
  const changed = desired.hash !== applied.hash;
  const wait = (reason: string, drift: string[] = []): SyncPlan => ({
    status: 'OutOfSync',
    action: 'none',
    drift,
    reason,
  });
  if (!desired.workload) {
    if (live.health === 'missing' && !live.image)
      return { status: 'Synced', action: changed ? 'record' : 'none', drift: [], reason: null };
    const prune = manual ? manual.prune : policy.automated && policy.prune;
    if (prune) return { status: 'OutOfSync', action: 'delete', drift: [], reason: null };
    return wait(
      manual || policy.automated
        ? 'the workload was removed from the deploy repo and prune is off'
        : 'automatic sync is off: waiting for a manual sync',
    );
  }
  if (changed) {
    if (manual) return { status: 'OutOfSync', action: 'apply', drift: [], reason: null };
    if (!policy.automated) return wait('automatic sync is off: waiting for a manual sync');
    if (applied.failedHash === desired.hash)
      return wait('the last sync of this revision failed; a new commit or a manual sync retries');
    return { status: 'OutOfSync', action: 'apply', drift: [], reason: null };
  }
  const drift = detectDrift(desired.workload, live);
  if (drift.length === 0) return { status: 'Synced', action: 'none', drift, reason: null };
  if (manual || (policy.automated && policy.selfHeal))
    return { status: 'OutOfSync', action: 'repair', drift, reason: null };
  return wait('drift detected; self-heal is off', drift);
}

// ---- the reconciler ----

/** Finds the Target instance for a team's target name; throws a ValveError when it has none. */
export interface TargetResolver {
  resolve(team: string, name: string): Promise<Target>;
}

export interface ReconcilerOptions {
  db: Kysely<DeployTables>;
  git: GitService;
  events: EventBus;
  targets: TargetResolver;
  images: ImageSource;
  /**
   * How often every environment is re-checked without a push (drift, missed events): the
   * time from the end of one poll to the start of the next, so polls never overlap.
   */
  pollIntervalMs?: number;
  /** Apps a poll looks at together (default 4): bounds the git, database and target load. */
  pollConcurrency?: number;
  /** Called on every poll, e.g. to expire approvals. */
  onPoll?: () => Promise<void>;
  /** Values of the secrets a workload's variables reference (`secretEnv`), by name. */
  secrets?: {
    resolve(team: string, app: string, names: string[]): Promise<Record<string, string>>;
  };
  log?: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

type EnvironmentRow = DeployTables['deploy_environments'];

/** One look at an environment: desired and live, or why one of them cannot be read. */
export interface Observation {
  row: EnvironmentRow;
  head: string | null;
  /** The commit that last changed the environment's folder (null: no folder). */
  revision: CommitInfo | null;
  desired: DesiredState | null;
  hash: string | null;
  /** Set when desired cannot be read or the target cannot be reached; nothing is applied. */
  error: { key: string; message: string } | null;
  target: Target | null;
  live: WorkloadStatus | null;
}

interface ManualSync {
  prune: boolean;
  actor: string;
}

interface Queue {
  running: boolean;
  pending: {
    /** Resolved once the pass has finished. */
    waiters: (() => void)[];
    /** Resolved once the pass has read desired and live (a poll's waiters). */
    observed: (() => void)[];
    manual: ManualSync | null;
  } | null;
}

/** What an environment's folder at one deploy-repo head says, kept until the head moves. */
interface DesiredRead {
  head: string;
  /** False: no folder at this head. */
  folder: boolean;
  revision: CommitInfo | null;
  desired: DesiredState | null;
  /** desiredHash of `desired`, when it has a workload (otherwise it depends on the row). */
  hash: string | null;
  error: { key: string; message: string } | null;
}

export class Reconciler {
  private readonly queues = new Map<string, Queue>();
  /**
   * The desired state per environment key as read at a deploy-repo head. A pass where the
   * head has not moved (every poll of an app nobody deployed) costs no git process and no
   * YAML parse: only the head read, the row and the target's status.
   */
  private readonly desiredReads = new Map<string, DesiredRead>();
  /** The head at which each app's `envs/` folders were last listed. */
  private readonly listedHeads = new Map<string, string>();
  private poller: NodeJS.Timeout | undefined;
  private polling: Promise<void> | null = null;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly options: ReconcilerOptions) {}

  /** Subscribes to deploy-repo commits and starts polling; the first pass runs at once. */
  async start(): Promise<void> {
    await this.failInterrupted();
    this.unsubscribe = this.options.events.on('git.refUpdated', (event) => {
      const match = /^([^/]+)\/([^/]+)\.deploy\.git$/.exec(event.repoPath);
      if (match && event.ref === 'refs/heads/main') void this.refreshApp(match[1]!, match[2]!);
    });
    this.schedulePoll(0);
  }

  /**
   * A poll now, or the one under way: resolves once every environment was looked at (not
   * once what that started has been applied). The next scheduled poll counts from its end.
   */
  pollNow(): Promise<void> {
    if (this.polling) return this.polling;
    clearTimeout(this.poller);
    return this.runPoll();
  }

  private runPoll(): Promise<void> {
    this.polling = this.poll().finally(() => {
      this.polling = null;
      this.schedulePoll(this.options.pollIntervalMs ?? 30_000);
    });
    return this.polling;
  }

  /** The next poll, `delayMs` after the last one ended. */
  private schedulePoll(delayMs: number): void {
    if (this.stopped) return;
    this.poller = setTimeout(() => void this.runPoll(), delayMs);
    this.poller.unref();
  }

  /**
   * Stops polling. Passes under way get a moment to finish; a rollout that takes longer is
   * left to the target (its instances keep running) and its sync, still `running`, is marked
   * failed and redone by the next server (`failInterrupted`).
   */
  async stop(graceMs = 2000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.poller);
    this.unsubscribe?.();
    const running = [...this.queues.values()]
      .filter((queue) => queue.running)
      .map(
        (queue) =>
          new Promise<void>((resolve) =>
            (queue.pending ??= { waiters: [], observed: [], manual: null }).waiters.push(resolve),
          ),
      );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(running),
      new Promise((resolve) => (timer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(timer);
  }

  /** Syncs a stopped server left `running`: failed, so the first pass applies them again. */
  async failInterrupted(): Promise<void> {
    await this.options.db
      .updateTable('deploy_syncs')
      .set({ status: 'failed', message: 'the server stopped during this sync', finished_at: now() })
      .where('status', '=', 'running')
      .execute();
  }

  /**
   * One look at every app, a few at a time. A poll waits for each environment's desired and
   * live to be read, not for what its pass then applies (a rollout can take minutes), and an
   * environment with a pass under way gets one more pass after it instead of a wait.
   */
  private async poll(): Promise<void> {
    try {
      await this.options.onPoll?.();
      const apps = await this.options.db
        .selectFrom('deploy_environments')
        .select('app_key')
        .distinct()
        .execute();
      let next = 0;
      const worker = async () => {
        while (next < apps.length && !this.stopped) {
          const [team = '', app = ''] = apps[next++]!.app_key.split('/');
          try {
            await this.refreshApp(team, app, { until: 'observed' });
          } catch (error) {
            this.options.log?.warn({ err: error, app: `${team}/${app}` }, 'deploy poll failed');
          }
        }
      };
      const workers = Math.max(1, this.options.pollConcurrency ?? 4);
      await Promise.all(Array.from({ length: workers }, worker));
    } catch (error) {
      this.options.log?.warn({ err: error }, 'deploy poll failed');
    }
  }

  /**
   * Reconciles every environment of an app: those known and every `envs/<name>/` folder of
   * the deploy repo (a folder added by hand becomes an environment). Resolves when all ran.
   */
  async refreshApp(
    team: string,
    app: string,
    options: { until?: 'done' | 'observed' } = {},
  ): Promise<void> {
    const key = appKey(team, app);
    const gitDir = this.options.git.pathOf(deployRepoPath(team, app));
    const head = await readBranchHead(gitDir, 'main');
    const rows = await this.options.db
      .selectFrom('deploy_environments')
      .select('name')
      .where('app_key', '=', key)
      .execute();
    if (rows.length === 0) return; // not an app's deploy repo (or the app is being created)
    const names = new Set(rows.map((r) => r.name));
    if (head && this.listedHeads.get(key) !== head) {
      for (const path of await listFilesAt(gitDir, head, 'envs')) {
        const name = path.split('/')[1];
        if (name && /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name) && !names.has(name)) {
          names.add(name);
          await insertEnvironment(this.options.db, team, app, name);
        }
      }
      this.listedHeads.set(key, head);
    }
    await Promise.all(
      [...names].map((name) => this.refresh(team, app, name, undefined, options.until)),
    );
  }

  /**
   * Runs one pass for the environment; resolves when a pass that started after this call has
   * finished. `manual` is a sync a user asked for (applies even when automatic sync is off).
   */
  refresh(
    team: string,
    app: string,
    environment: string,
    manual?: ManualSync,
    /** 'observed': resolve once the pass has read desired and live, or at once when a pass is under way. */
    until: 'done' | 'observed' = 'done',
  ): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const key = `${appKey(team, app)}/${environment}`;
    let queue = this.queues.get(key);
    if (!queue) this.queues.set(key, (queue = { running: false, pending: null }));
    const current = queue;
    return new Promise((resolve) => {
      current.pending ??= { waiters: [], observed: [], manual: null };
      if (until === 'done') current.pending.waiters.push(resolve);
      else if (current.running) resolve();
      else current.pending.observed.push(resolve);
      if (manual) current.pending.manual = manual;
      if (!current.running) void this.drain(key, current, team, app, environment);
    });
  }

  private async drain(key: string, queue: Queue, team: string, app: string, environment: string) {
    queue.running = true;
    while (queue.pending) {
      const pass = queue.pending;
      queue.pending = null;
      const observed = () => pass.observed.splice(0).forEach((resolve) => resolve());
      if (!this.stopped) {
        try {
          await this.reconcileEnvironment(team, app, environment, pass.manual, observed);
        } catch (error) {
          this.options.log?.warn({ err: error, key }, 'reconcile failed');
        }
      }
      observed();
      for (const resolve of pass.waiters) resolve();
    }
    queue.running = false;
    this.queues.delete(key);
  }

  /** Desired and live of one environment, read now; nothing is changed. */
  async observe(
    team: string,
    app: string,
    environment: string,
    options: { verify?: boolean } = {},
  ): Promise<Observation | null> {
    const { db, git, targets } = this.options;
    const row = await db
      .selectFrom('deploy_environments')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('name', '=', environment)
      .executeTakeFirst();
    if (!row) return null;
    const gitDir = git.pathOf(deployRepoPath(team, app));
    const head = await readBranchHead(gitDir, 'main');
    const key = `${row.app_key}/${environment}`;
    const read = await this.readDesired(gitDir, head, environment, key);
    let desired: DesiredState | null = null;
    if (!read.error) {
      desired = read.desired
        ? { ...read.desired }
        : // No folder (never deployed, or removed from the repo): nothing is desired there.
          {
            resources: [],
            workload: null,
            target: row.target ?? 'local',
            policy: parsePolicy(row.sync_policy),
            sourceCommit: null,
          };
      if (read.desired && !read.desired.workload) {
        // No workload: what is live (if anything) is where it was, under the policy it had.
        desired.target = row.target ?? desired.target;
        desired.policy = parsePolicy(row.sync_policy);
      }
    }
    const observation: Observation = {
      row,
      head,
      revision: read.revision,
      desired,
      hash: desired && (read.hash ?? desiredHash(key, desired)),
      error: read.error,
      target: null,
      live: null,
    };
    if (!observation.desired) return observation;
    const targetName = observation.desired.target;
    try {
      observation.target = await targets.resolve(team, targetName);
      observation.live = await observation.target.status(key, { verify: options.verify });
    } catch (error) {
      // Not the team's, its driver missing, or unreachable: a condition on the environment.
      const message = error instanceof Error ? error.message : String(error);
      observation.error = {
        key: `target:${targetName}:${observation.revision?.sha}:${message}`,
        message: error instanceof ValveError ? message : `target ${targetName}: ${message}`,
      };
    }
    return observation;
  }

  /** The environment's folder at `head`, read and parsed once per head. */
  private async readDesired(
    gitDir: string,
    head: string | null,
    environment: string,
    key: string,
  ): Promise<DesiredRead> {
    const cached = this.desiredReads.get(key);
    if (head && cached?.head === head) return cached;
    const read: DesiredRead = {
      head: head ?? '',
      folder: false,
      revision: null,
      desired: null,
      hash: null,
      error: null,
    };
    if (head) {
      // One `git cat-file --batch` for the folder's listing and files, one `git log` beside it.
      const reader = openObjectReader(gitDir);
      try {
        const files = [...(await reader.listFiles(head, envDir(environment))).keys()];
        if (files.length > 0) {
          read.folder = true;
          const manifests = files.filter((path) => /\.ya?ml$/.test(path));
          const [revisions, texts] = await Promise.all([
            logCommits(gitDir, head, { limit: 1, path: envDir(environment) }),
            Promise.all(
              manifests.map(async (path) => ({
                path,
                text: (await reader.readFile(head, path))!.toString(),
              })),
            ),
          ]);
          read.revision = revisions[0] ?? null;
          try {
            read.desired = readDesiredState(texts, key);
            if (read.desired.workload) read.hash = desiredHash(key, read.desired);
          } catch (error) {
            if (!(error instanceof FileValidationError)) throw error;
            read.error = {
              key: `manifest:${read.revision?.sha}`,
              message: `deploy repo: ${error.message}`,
            };
          }
        }
      } finally {
        reader.close();
      }
    }
    if (head) this.desiredReads.set(key, read);
    else this.desiredReads.delete(key);
    return read;
  }

  /** Desired against live, field by field, for the API's diff. */
  async diff(team: string, app: string, environment: string) {
    const seen = await this.observe(team, app, environment);
    if (!seen) return null;
    const { row, desired, live } = seen;
    const baseline: ManifestResource[] = row.applied_resources
      ? (JSON.parse(row.applied_resources) as ManifestResource[])
      : (desired?.resources ?? []);
    const sameTarget = !row.target || row.target === desired?.target;
    const liveSide = live && sameTarget ? liveResources(baseline, live) : [];
    return {
      observation: seen,
      live: liveSide,
      items: desired && !seen.error ? diffResources(desired.resources, liveSide) : [],
    };
  }

  private async reconcileEnvironment(
    team: string,
    app: string,
    environment: string,
    manual: ManualSync | null,
    observed: () => void,
  ): Promise<void> {
    // A poll takes the target's own periodic drift check; a sync a user asks for checks now.
    const seen = await this.observe(team, app, environment, { verify: manual !== null });
    observed();
    if (!seen || !seen.head) return;
    const { row, revision } = seen;
    const key = `${row.app_key}/${environment}`;
    // No folder at head (never deployed, or removed): no commit of its own to report.
    const folder = revision !== null;
    const commit = revision?.sha ?? seen.head;

    if (seen.error || !seen.desired || !seen.target || !seen.live || !seen.hash) {
      // Desired state unreadable or no target to run it: say why, once, and touch nothing live.
      const error = seen.error ?? { key: 'unknown', message: 'environment cannot be read' };
      if (row.failed_hash !== error.key || manual) {
        await this.recordSync(row, {
          commit,
          status: 'failed',
          message: error.message,
          trigger: manual ? 'manual' : 'auto',
          actor: manual?.actor ?? 'valve',
          finished: true,
        });
      }
      await this.update(row, {
        sync_status: 'Unknown',
        desired_commit: commit,
        failed_hash: error.key,
        message: error.message,
      });
      return;
    }

    const { desired, target, live, hash } = seen;
    const plan = planSync({
      desired: { hash, workload: desired.workload },
      applied: { hash: row.applied_hash, failedHash: row.failed_hash },
      live,
      policy: desired.policy,
      manual: manual && { prune: manual.prune },
    });
    const driftKey = plan.drift.length ? JSON.stringify(plan.drift) : null;
    const newDrift = driftKey !== null && driftKey !== row.drift;
    if (newDrift) {
      await this.recordSync(row, {
        commit,
        status: 'drifted',
        message: `drift detected: ${plan.drift.join('; ')}`,
        trigger: 'auto',
        actor: 'valve',
        finished: true,
      });
    }
    await this.update(row, {
      sync_status: plan.status,
      desired_commit: folder ? commit : null,
      sync_policy: JSON.stringify(desired.policy),
      drift: driftKey,
      ...(plan.reason ? { message: plan.reason } : {}),
    });

    const applied = {
      commit,
      head: seen.head,
      desired,
      hash,
      targetName: desired.target,
    };
    switch (plan.action) {
      case 'none':
        if (plan.status === 'Synced') {
          if (folder && row.applied_commit !== commit) {
            // A new revision that changes nothing live (e.g. a re-format): note it as synced.
            await this.markApplied(row, applied, { keepDeployedAt: true });
          } else if (row.message || row.synced_head !== seen.head || row.sync_status !== 'Synced')
            await this.update(row, { message: null, synced_head: seen.head });
        }
        return;
      case 'record':
        if (!folder && !row.applied_commit) {
          // Never deployed and nothing desired: no sync to record (other environments' deploys
          // move the head; they are not this environment's).
          await this.update(row, { message: null, synced_head: seen.head });
          return;
        }
        await this.recordSync(row, {
          commit,
          status: 'succeeded',
          message: 'nothing to run',
          trigger: manual ? 'manual' : 'auto',
          actor: manual?.actor ?? actorOf(revision),
          finished: true,
        });
        await this.markApplied(row, applied, { keepDeployedAt: true });
        return;
      case 'delete':
        await this.prune(row, target, key, applied, manual);
        return;
      case 'apply':
      case 'repair': {
        const trigger: SyncTrigger = manual
          ? 'manual'
          : plan.action === 'repair'
            ? 'self-heal'
            : triggerOf(revision);
        // A repair that keeps failing is recorded when the drift is new, not on every poll.
        const quiet = plan.action === 'repair' && !manual && !newDrift;
        // Drift only the target can see (a file, an instance) is its to repair; a different
        // image or replica count, or a workload gone, needs the spec applied again.
        const ownDrift =
          plan.action === 'repair' &&
          detectDrift(desired.workload!, { ...live, drift: [] }).length > 0;
        await this.apply(row, target, { key, ...desired.workload! }, applied, {
          trigger,
          actor: manual?.actor ?? (trigger === 'self-heal' ? 'valve' : actorOf(revision)),
          repair:
            plan.action !== 'repair'
              ? null
              : target.capabilities.selfHeal && !ownDrift
                ? 'target'
                : 'apply',
          quiet,
        });
        return;
      }
    }
  }

  private async apply(
    row: EnvironmentRow,
    target: Target,
    spec: WorkloadSpec,
    applied: AppliedState,
    /** repair 'target': the target re-creates what it found drifted; 'apply': apply again. */
    how: { trigger: SyncTrigger; actor: string; repair: 'target' | 'apply' | null; quiet: boolean },
  ): Promise<void> {
    const previousTarget = row.target;
    const sync = {
      commit: applied.commit,
      trigger: how.trigger,
      actor: how.actor,
      sourceCommit: applied.desired.sourceCommit,
      image: spec.image.reference,
    };
    if (!(await this.options.images.getManifest(spec.image.repo, spec.image.digest))) {
      const message = `image ${spec.image.reference} is not in the registry`;
      if (!how.quiet)
        await this.recordSync(row, { ...sync, status: 'failed', message, finished: true });
      await this.update(row, { failed_hash: applied.hash, message, sync_status: 'OutOfSync' });
      return;
    }
    const id = how.quiet
      ? null
      : await this.recordSync(row, {
          ...sync,
          status: 'running',
          message: `${how.repair ? 'repairing' : 'applying'} ${spec.image.digest.slice(0, 19)} on ${target.name}${how.repair ? `: ${row.drift ? (JSON.parse(row.drift) as string[]).join('; ') : ''}` : ''}`,
          finished: false,
        });
    try {
      if (how.repair === 'target') await target.repair(spec.key);
      else
        await target.apply(await this.withSecrets(row, spec), (message) =>
          this.options.log?.info({ key: spec.key }, message),
        );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (id) await this.finishSync(id, 'failed', message);
      // The target state is uncertain now: the next change re-applies in full.
      await this.update(row, {
        applied_hash: how.repair ? row.applied_hash : null,
        failed_hash: how.repair ? row.failed_hash : applied.hash,
        message,
        sync_status: 'OutOfSync',
      });
      return;
    }
    await this.markApplied(row, applied, { keepDeployedAt: how.repair !== null });
    if (id) await this.finishSync(id, 'succeeded', null);
    // Moved to another target: what ran on the old one goes.
    if (previousTarget && previousTarget !== applied.targetName) {
      const [team = ''] = row.app_key.split('/');
      try {
        await (await this.options.targets.resolve(team, previousTarget)).delete(spec.key);
      } catch (error) {
        this.options.log?.warn(
          { err: error, key: spec.key },
          'could not delete from the old target',
        );
      }
    }
  }

  /** The spec with the values of the secrets its variables reference, read at apply time. */
  private async withSecrets(row: EnvironmentRow, spec: WorkloadSpec): Promise<WorkloadSpec> {
    const refs = (spec as { secretEnv?: Record<string, { key: string }> }).secretEnv ?? {};
    const names = Object.values(refs).map((ref) => ref.key);
    if (names.length === 0) return spec;
    if (!this.options.secrets) throw new Error('secrets are referenced but none can be read here');
    const [team = '', app = ''] = row.app_key.split('/');
    const values = await this.options.secrets.resolve(team, app, names);
    const missing = names.filter((name) => values[name] === undefined);
    if (missing.length)
      throw new Error(
        `secret ${missing.join(', ')} is not set for ${row.app_key} (valve secrets set ${row.app_key} ${missing[0]})`,
      );
    const env = { ...spec.env };
    for (const [variable, ref] of Object.entries(refs)) env[variable] = values[ref.key]!;
    return { ...spec, env };
  }

  private async prune(
    row: EnvironmentRow,
    target: Target,
    key: string,
    applied: AppliedState,
    manual: ManualSync | null,
  ) {
    const id = await this.recordSync(row, {
      commit: applied.commit,
      status: 'running',
      message: `deleting ${key} from ${target.name}: it is no longer in the deploy repo`,
      trigger: manual ? 'manual' : 'prune',
      actor: manual?.actor ?? 'valve',
      finished: false,
    });
    try {
      await target.delete(key);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await this.finishSync(id, 'failed', message);
      await this.update(row, { message });
      return;
    }
    await this.markApplied(row, applied, { keepDeployedAt: false });
    await this.finishSync(id, 'succeeded', null);
  }

  private async markApplied(
    row: EnvironmentRow,
    applied: AppliedState,
    options: { keepDeployedAt: boolean },
  ) {
    const { desired } = applied;
    await this.update(row, {
      applied_commit: applied.commit,
      applied_image: desired.workload?.image.reference ?? null,
      applied_hash: applied.hash,
      applied_resources: JSON.stringify(desired.resources),
      source_commit: desired.sourceCommit,
      target: applied.targetName,
      sync_policy: JSON.stringify(desired.policy),
      sync_status: 'Synced',
      synced_head: applied.head,
      failed_hash: null,
      drift: null,
      message: null,
      ...(options.keepDeployedAt && row.deployed_at ? {} : { deployed_at: now() }),
    });
  }

  /** Writes the fields that differ from `row` (and announces the change); no-op otherwise. */
  private async update(row: EnvironmentRow, change: Partial<EnvironmentRow>) {
    const changed = Object.fromEntries(
      Object.entries(change).filter(([name, value]) => row[name as keyof EnvironmentRow] !== value),
    ) as Partial<EnvironmentRow>;
    if (Object.keys(changed).length === 0) return;
    change = changed;
    await this.options.db
      .updateTable('deploy_environments')
      .set(change)
      .where('app_key', '=', row.app_key)
      .where('name', '=', row.name)
      .execute();
    Object.assign(row, change);
    this.options.events.emit('deploy.updated', { appId: row.app_key, environment: row.name });
  }

  private async recordSync(
    row: EnvironmentRow,
    sync: {
      commit: string;
      status: 'running' | 'succeeded' | 'failed' | 'drifted';
      message: string;
      trigger: SyncTrigger;
      actor: string;
      finished: boolean;
      sourceCommit?: string | null;
      image?: string | null;
    },
  ): Promise<string> {
    const id = newId('sync');
    await this.options.db
      .insertInto('deploy_syncs')
      .values({
        id,
        app_key: row.app_key,
        environment: row.name,
        commit: sync.commit,
        status: sync.status,
        message: sync.message,
        started_at: now(),
        finished_at: sync.finished ? now() : null,
        source_commit: sync.sourceCommit ?? null,
        image: sync.image ?? null,
        trigger: sync.trigger,
        actor: sync.actor,
      })
      .execute();
    this.options.events.emit('deploy.updated', { appId: row.app_key, environment: row.name });
    return id;
  }

  private async finishSync(id: string, status: 'succeeded' | 'failed', message: string | null) {
    const row = await this.options.db
      .updateTable('deploy_syncs')
      .set({ status, message, finished_at: now() })
      .where('id', '=', id)
      .returning(['app_key', 'environment'])
      .executeTakeFirst();
    if (row)
      this.options.events.emit('deploy.updated', {
        appId: row.app_key,
        environment: row.environment,
      });
  }
}

interface AppliedState {
  commit: string;
  head: string;
  desired: DesiredState;
  hash: string;
  targetName: string;
}

/** Inserts an environment row (no-op when it exists). */
export async function insertEnvironment(
  db: Kysely<DeployTables>,
  team: string,
  app: string,
  name: string,
): Promise<void> {
  await db
    .insertInto('deploy_environments')
    .values({
      app_key: appKey(team, app),
      name,
      applied_commit: null,
      applied_image: null,
      applied_hash: null,
      source_commit: null,
      deployed_at: null,
      message: null,
      created_at: now(),
      sync_status: 'Unknown',
      desired_commit: null,
      synced_head: null,
      target: null,
      applied_resources: null,
      sync_policy: null,
      failed_hash: null,
      drift: null,
    })
    .onConflict((oc) => oc.columns(['app_key', 'name']).doNothing())
    .execute();
}

export function parsePolicy(json: string | null): SyncPolicy {
  if (!json) return defaultSyncPolicy;
  try {
    return { ...defaultSyncPolicy, ...(JSON.parse(json) as Partial<SyncPolicy>) };
  } catch {
    return defaultSyncPolicy;
  }
}

/** The trigger a deploy-repo commit stands for, from its subject (see promotion.ts). */
function triggerOf(commit: CommitInfo | null): SyncTrigger {
  if (commit?.subject.startsWith('promote ')) return 'promote';
  if (commit?.subject.startsWith('rollback ')) return 'rollback';
  return 'auto';
}

/** Who made a deploy-repo commit: its author, or `valve` for Valve's own. */
function actorOf(commit: CommitInfo | null): string {
  if (!commit || commit.email === 'valve@localhost') return 'valve';
  return commit.author;
}
