import type { WorkloadProxy } from '../local/proxy.js';
import { describeWorkloadStatus, missingStatus, sameSpec } from '../shared/workload-status.js';
import { safeWorkloadName } from '../shared/workload-name.js';
import type { WorkloadStatus } from '../target.js';
import type { PodmanInstance } from './instance.js';
import type { WorkloadRecord } from './state-file.js';

/** One workload of the podman target as it runs, and how its status is told from it. */

export interface Workload {
  /** Persisted fields; `instances` is rebuilt from the live instances at each save. */
  record: WorkloadRecord;
  instances: PodmanInstance[];
  proxy: WorkloadProxy | null;
  progressing: boolean;
  /** Containers labelled for this workload that no instance owns, as the last listing found. */
  strays: string[];
}

/**
 * The status: health from the serving spec and the ready active instances (as the local
 * target); drift from the instances' containers and the strays the last listing found.
 */
export function describeWorkload(
  workload: Workload,
  host: string,
  listError: string | null,
): WorkloadStatus {
  const drift = [
    ...workload.instances
      .filter((instance) => instance.record.role === 'active' && instance.drift)
      .map((instance) => `instance ${instance.id}: ${instance.drift}`),
    ...workload.strays.map((name) => `container ${name} is not part of the workload`),
  ];
  return describeWorkloadStatus(workload, host, drift, [listError]);
}

/** The status of a key the target does not know. */
export const missing = missingStatus;

/** Readable, unique and valid in a container name: `team-a/hello/dev` -> `team-a_hello_dev-1a2b3c4d`. */
export const nameOf = safeWorkloadName;

export { sameSpec };
