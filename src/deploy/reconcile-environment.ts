/**
 * One environment's sync: given what `Reconciler.observe` saw (desired and live, or why one of
 * them cannot be read), `planSync` decides and `EnvironmentSync` carries it out: apply, repair,
 * prune, or record. Every outcome is written to the environment's row and, when something ran
 * or failed, a `deploy_syncs` row; a failure is stored as the environment's message, never
 * thrown, and an unreadable manifest or unreachable target touches nothing live.
 */
import type { Kysely } from 'kysely';
import type { EventBus } from '../events.js';
import type { CommitInfo } from '../git/index.js';
import { newId } from '../ids.js';
import { now } from '../store/index.js';
import { appKey, type DesiredState } from './desired-state.js';
import type { DeployTables } from './migrations.js';
import { detectDrift, planSync, type SyncTrigger } from './reconcile-plan.js';
import type { ImageSource, Target, WorkloadSpec, WorkloadStatus } from './targets/target.js';

/** Finds the Target instance for a team's target name; throws a ValveError when it has none. */
export interface TargetResolver {
  resolve(team: string, name: string): Promise<Target>;
}

export type EnvironmentRow = DeployTables['deploy_environments'];

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

/** A sync a user asked for (applies even when automatic sync is off). */
export interface ManualSync {
  prune: boolean;
  actor: string;
}

/** What a sync needs besides the observation. */
export interface EnvironmentSyncOptions {
  db: Kysely<DeployTables>;
  events: EventBus;
  targets: TargetResolver;
  images: ImageSource;
  /** Values of the secrets a workload's variables reference (`secretEnv`), by name. */
  secrets?: {
    resolve(team: string, app: string, names: string[]): Promise<Record<string, string>>;
  };
  log?: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

export class EnvironmentSync {
  constructor(private readonly options: EnvironmentSyncOptions) {}

  /** Decides from the observation and does it; `manual` is a sync a user asked for. */
  async sync(seen: Observation, manual: ManualSync | null): Promise<void> {
    if (!seen.head) return;
    const { row, revision } = seen;
    const key = `${row.app_key}/${row.name}`;
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
