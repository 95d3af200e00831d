import type { WorkloadProxy } from '../local/proxy.js';
import type { RolloutController } from '../rollout.js';
import type { ProxyRolloutBackends } from '../shared/proxy-rollout.js';
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
  /** The stable address. */
  proxy: WorkloadProxy | null;
  progressing: boolean;
  /** Containers labelled for this workload that no instance owns, as the last listing found. */
  strays: string[];
  /** Share (0-100) of the stable address's requests for ready candidates: a canary. */
  canaryWeight: number;
  /** Blue-green: an address serving only the candidates, until the switch. */
  preview: WorkloadProxy | null;
  /** The canary or blue-green rollout under way. */
  rollout: {
    controller: RolloutController;
    backends: ProxyRolloutBackends<PodmanInstance>;
  } | null;
}

export function newWorkload(record: WorkloadRecord): Workload {
  return {
    record,
    instances: [],
    proxy: null,
    progressing: false,
    strays: [],
    canaryWeight: 0,
    preview: null,
    rollout: null,
  };
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

export { sameSpec };
