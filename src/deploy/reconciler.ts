/**
 * The reconciler, as three steps: compare (desired = the deploy repo's `main`, rendered back
 * by manifests.ts; live = the target's status), health (the target's, per resource) and sync
 * (`planSync` decides, `EnvironmentSync` carries it out). One pass per environment at a time; a
 * pass runs on every deploy-repo commit and on a poll, so missed events and drift are found.
 * A failure (unreadable manifest, unregistered target, failed rollout) is stored as the
 * environment's message and a sync row, never thrown; the live version is left alone.
 *
 * This file schedules the passes (events, polls, one queue per environment) and observes an
 * environment; the parts: reconcile-plan.ts (vocabularies and `planSync`), desired-state.ts
 * (what a folder asks for), desired-state-cache.ts (the deploy repo read once per folder
 * change), reconcile-environment.ts (a pass's sync). Their names are exported from here.
 */
import { ValveError } from '../errors.js';
import { readBranchHead, type GitService } from '../git/index.js';
import { now } from '../store/index.js';
import { DesiredStateCache } from './desired-state-cache.js';
import { appKey, deployRepoPath, desiredHash, type DesiredState } from './desired-state.js';
import { diffResources, liveResources, type ManifestResource } from './diff.js';
import {
  EnvironmentSync,
  insertEnvironment,
  type EnvironmentSyncOptions,
  type ManualSync,
  type Observation,
} from './reconcile-environment.js';
import { parsePolicy } from './reconcile-plan.js';

export {
  appKey,
  deployRepoPath,
  desiredHash,
  envDir,
  readDesiredState,
  type DesiredState,
  type DesiredWorkloadSpec,
} from './desired-state.js';
export {
  defaultSyncPolicy,
  detectDrift,
  parsePolicy,
  planSync,
  syncStatuses,
  syncTriggers,
  type PlanInput,
  type SyncPlan,
  type SyncPolicy,
  type SyncStatus,
  type SyncTrigger,
} from './reconcile-plan.js';
export {
  insertEnvironment,
  type Observation,
  type TargetResolver,
} from './reconcile-environment.js';

export interface ReconcilerOptions extends EnvironmentSyncOptions {
  git: GitService;
  /**
   * How often every environment is re-checked without a push (drift, missed events): the
   * time from the end of one poll to the start of the next, so polls never overlap.
   */
  pollIntervalMs?: number;
  /** Apps a poll looks at together (default 4): bounds the git, database and target load. */
  pollConcurrency?: number;
  /** Called on every poll, e.g. to expire approvals. */
  onPoll?: () => Promise<void>;
}

/** A valid environment name: a folder `envs/<name>` added by hand becomes an environment. */
const ENVIRONMENT_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

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

export class Reconciler {
  private readonly queues = new Map<string, Queue>();
  /**
   * The desired state of each environment, kept by its folder's tree id. A pass where the head
   * has not moved (every poll of an app nobody deployed) costs no git process and no YAML
   * parse: only the head read, the row and the target's status. A deploy commit to one
   * environment re-reads that environment's folder only.
   */
  private readonly desired = new DesiredStateCache();
  private readonly environmentSync: EnvironmentSync;
  /** The head at which each app's `envs/` folders were last listed. */
  private readonly listedHeads = new Map<string, string>();
  private poller: NodeJS.Timeout | undefined;
  private polling: Promise<void> | null = null;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly options: ReconcilerOptions) {
    this.environmentSync = new EnvironmentSync(options);
  }

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
      // Read through the environments' cache: the passes below find this head read.
      for (const name of await this.desired.entries(gitDir, key, head)) {
        if (ENVIRONMENT_NAME.test(name) && !names.has(name)) {
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
    const read = await this.desired.read(gitDir, row.app_key, environment, head);
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
    if (seen) await this.environmentSync.sync(seen, manual);
  }
}
