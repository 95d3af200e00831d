/**
 * The reconciler's vocabularies (sync status, trigger, policy) and its decision: `planSync`,
 * a pure function of desired hash, applied hash, live facts and the sync policy.
 */
import { defaultSyncOptions, type SyncOptions } from './appspec.js';
import type { WorkloadSpec, WorkloadStatus } from './targets/target.js';

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

/** A policy as stored (`sync_policy`), with the defaults for what it lacks or cannot be read. */
export function parsePolicy(json: string | null): SyncPolicy {
  if (!json) return defaultSyncPolicy;
  try {
    return { ...defaultSyncPolicy, ...(JSON.parse(json) as Partial<SyncPolicy>) };
  } catch {
    return defaultSyncPolicy;
  }
}

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
