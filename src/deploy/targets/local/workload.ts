import type { RolloutController } from '../rollout.js';
import { describeWorkloadStatus, missingStatus, sameSpec } from '../shared/workload-status.js';
import type { WorkloadStatus } from '../target.js';
import type { Instance } from './instance.js';
import type { LaunchPlan } from './launch.js';
import type { WorkloadProxy } from './proxy.js';
import type { LocalRolloutBackends } from './rollout-backends.js';
import type { WorkloadRecord } from './state-file.js';

export { missingStatus, sameSpec };
// The local names of the shared routing and settling (local-target.ts and rollout-backends.ts
// import them from here).
export {
  routeThroughProxies as routeWorkload,
  settleUnfinishedRollout as settleRollout,
} from '../shared/proxy-rollout.js';

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
