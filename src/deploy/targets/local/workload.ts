import { unfinishedRolloutPhases, type RolloutController } from '../rollout.js';
import { describeWorkloadStatus, missingStatus, sameSpec } from '../shared/workload-status.js';
import type { WorkloadStatus } from '../target.js';
import type { Instance } from './instance.js';
import type { LaunchPlan } from './launch.js';
import type { WorkloadProxy } from './proxy.js';
import type { LocalRolloutBackends } from './rollout-backends.js';
import type { WorkloadRecord } from './state-file.js';

export { missingStatus, sameSpec };

/** One workload as the local target holds it in memory. */
export interface Workload {
  /** Persisted fields; `instances` is rebuilt from the live instances at each save. */
  record: WorkloadRecord;
  instances: Instance[];
  /** The stable address. */
  proxy: WorkloadProxy | null;
  /** An apply (or a repair) is under way. */
  progressing: boolean;
  /** Share (0-100) of the stable address's requests for ready candidates: a canary. */
  canaryWeight: number;
  /** Blue-green: an address serving only the candidates, until the switch. */
  preview: WorkloadProxy | null;
  /** The canary or blue-green rollout under way. */
  rollout: { controller: RolloutController; backends: LocalRolloutBackends } | null;
}

/** How to run an image's processes, and the root they run from (for drift checks). */
export interface PreparedImage {
  launch: LaunchPlan | Error;
  rootfs: string | null;
}

export function newWorkload(record: WorkloadRecord): Workload {
  return {
    record,
    instances: [],
    proxy: null,
    progressing: false,
    canaryWeight: 0,
    preview: null,
    rollout: null,
  };
}

/**
 * Points the addresses at the instances that pass readiness: the stable address at the active
 * ones, plus the candidates at `canaryWeight`; the preview address at the candidates.
 */
export function routeWorkload(workload: Workload): void {
  const ready = (role: 'active' | 'candidate') =>
    workload.instances
      .filter((instance) => instance.record.role === role && instance.ready)
      .map((instance) => ({ id: instance.id, port: instance.record.port }));
  workload.proxy?.setBackends(ready('active'));
  workload.proxy?.setCanary(ready('candidate'), workload.canaryWeight);
  workload.preview?.setBackends(ready('candidate'));
}

/** The status of a workload, given its drift. */
export function describeWorkload(
  workload: Workload,
  host: string,
  drift: string[],
): WorkloadStatus {
  const status = describeWorkloadStatus(workload, host, drift);
  if (workload.record.rollout) status.rollout = { ...workload.record.rollout };
  return status;
}

/**
 * A rollout the previous server did not finish: recovery stops its candidates, so it is
 * rolled back, unless its switch was saved (then it was promoted).
 */
export function settleRollout(record: WorkloadRecord): void {
  const { rollout, serving, desired } = record;
  if (!rollout || !unfinishedRolloutPhases.includes(rollout.phase)) return;
  const promoted =
    serving !== null &&
    desired !== null &&
    serving.image.digest === rollout.canaryImage &&
    sameSpec(serving, desired);
  const message = promoted
    ? 'promoted (its switch was saved before the server restarted)'
    : `rolled back: the server restarted during the rollout at step ${rollout.step}; the stable version serves`;
  record.rollout = {
    ...rollout,
    phase: promoted ? 'promoted' : 'rolled-back',
    weight: promoted ? 100 : 0,
    previewUrl: null,
    message,
    updatedAt: new Date().toISOString(),
  };
  if (!promoted) record.message = message;
}
