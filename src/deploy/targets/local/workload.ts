import { unfinishedRolloutPhases, type RolloutController } from '../rollout.js';
import type { HealthState, WorkloadSpec, WorkloadStatus } from '../target.js';
import type { Instance } from './instance.js';
import type { LaunchPlan } from './launch.js';
import type { WorkloadProxy } from './proxy.js';
import type { LocalRolloutBackends } from './rollout-backends.js';
import type { WorkloadRecord } from './state-file.js';

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
  fallbackUrl: string,
  drift: string[],
): WorkloadStatus {
  const { record } = workload;
  const serving = record.serving;
  const desired = record.desired ?? serving;
  const active = workload.instances.filter((instance) => instance.record.role === 'active');
  const ready = active.filter(
    (instance) => instance.ready && instance.record.image.digest === serving?.image.digest,
  );
  let health: HealthState;
  if (workload.progressing) health = 'progressing';
  else if (!serving) health = 'missing';
  else if (desired && sameSpec(desired, serving) && ready.length >= serving.replicas)
    health = 'healthy';
  else health = 'degraded';
  const problems = active
    .filter((instance) => !instance.ready && instance.problem)
    .map((instance) => `${instance.id}: ${instance.problem}`);
  const status: WorkloadStatus = {
    key: record.key,
    health,
    url: workload.proxy?.url ?? fallbackUrl,
    image: serving?.image.digest ?? null,
    imageReference: serving?.image.reference ?? null,
    desiredReplicas: desired?.replicas ?? 0,
    readyReplicas: ready.length,
    instances: workload.instances.map((instance) => instance.status()),
    message: [record.message, ...problems].filter(Boolean).join('; ') || null,
    drift,
  };
  if (record.rollout) status.rollout = { ...record.rollout };
  return status;
}

export function missingStatus(key: string): WorkloadStatus {
  return {
    key,
    health: 'missing',
    url: null,
    image: null,
    imageReference: null,
    desiredReplicas: 0,
    readyReplicas: 0,
    instances: [],
    message: null,
    drift: [],
  };
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

/** Same spec, whatever the order of keys (env maps are built in any order). */
export function sameSpec(a: WorkloadSpec, b: WorkloadSpec): boolean {
  return canonical(a) === canonical(b);
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    inner && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))
      : inner,
  );
}
