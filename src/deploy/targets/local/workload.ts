import type { ProxyWorkload } from '../shared/proxy-rollout.js';
import { describeWorkloadStatus } from '../shared/workload-status.js';
import type { WorkloadStatus } from '../target.js';
import type { Instance } from './instance.js';
import type { LaunchPlan } from './launch.js';
import type { WorkloadRecord } from './state-file.js';

/**
 * One workload as the local target holds it in memory: its record, its instances, its
 * addresses and the rollout under way (`../shared/proxy-rollout.ts`).
 */
export type Workload = ProxyWorkload<WorkloadRecord, Instance>;

/** How to run an image's processes, and the root they run from (for drift checks). */
export interface PreparedImage {
  launch: LaunchPlan | Error;
  rootfs: string | null;
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
