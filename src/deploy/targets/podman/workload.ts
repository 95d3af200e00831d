import { newProxyWorkload, type ProxyWorkload } from '../shared/proxy-rollout.js';
import { describeWorkloadStatus, missingStatus } from '../shared/workload-status.js';
import { safeWorkloadName } from '../shared/workload-name.js';
import type { WorkloadStatus } from '../target.js';
import type { PodmanInstance } from './instance.js';
import type { WorkloadRecord } from './state-file.js';

/** One workload of the podman target as it runs, and how its status is told from it. */

/** As the local target's (`../shared/proxy-rollout.ts`), plus the strays of its containers. */
export interface Workload extends ProxyWorkload<WorkloadRecord, PodmanInstance> {
  /** Containers labelled for this workload that no instance owns, as the last listing found. */
  strays: string[];
}

export function newWorkload(record: WorkloadRecord): Workload {
  return { ...newProxyWorkload<WorkloadRecord, PodmanInstance>(record), strays: [] };
}

/** What the status needs of the file drift check (file-drift.ts). */
export interface FileDrift {
  driftOf(instance: PodmanInstance): string[];
  errorOf(instance: PodmanInstance): string | null;
}

/**
 * The status: health from the serving spec and the ready active instances (as the local
 * target); drift from the instances' containers, their files as last checked and the strays
 * the last listing found; the last canary or blue-green rollout.
 */
export function describeWorkload(
  workload: Workload,
  host: string,
  listError: string | null,
  files: FileDrift,
): WorkloadStatus {
  const active = workload.instances.filter((instance) => instance.record.role === 'active');
  const drift = [
    ...active
      .filter((instance) => instance.drift)
      .map((instance) => `instance ${instance.id}: ${instance.drift}`),
    ...active.flatMap((instance) =>
      files.driftOf(instance).map((line) => `instance ${instance.id}: ${line}`),
    ),
    ...workload.strays.map((name) => `container ${name} is not part of the workload`),
  ];
  const notes = active.map((instance) => {
    const error = files.errorOf(instance);
    return error && `${instance.id}: ${error}`;
  });
  const status = describeWorkloadStatus(workload, host, drift, [listError, ...notes]);
  if (workload.record.rollout) status.rollout = { ...workload.record.rollout };
  return status;
}

/** The status of a key the target does not know. */
export const missing = missingStatus;

/** Readable, unique and valid in a container name: `team-a/hello/dev` -> `team-a_hello_dev-1a2b3c4d`. */
export const nameOf = safeWorkloadName;
