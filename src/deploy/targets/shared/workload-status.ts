import type { HealthState, InstanceStatus, WorkloadSpec, WorkloadStatus } from '../target.js';

/**
 * How a workload's status is told from its specs and instances, for the drivers whose
 * instances sit behind one stable address (local, podman).
 */

/** What the status needs of an instance. */
export interface StatusInstance {
  readonly id: string;
  readonly ready: boolean;
  problem: string | null;
  readonly record: { role: string; image: { digest: string } };
  status(): InstanceStatus;
}

/** What the status needs of a workload. */
export interface StatusWorkload {
  record: {
    key: string;
    proxyPort: number;
    desired: WorkloadSpec | null;
    serving: WorkloadSpec | null;
    message: string | null;
  };
  instances: StatusInstance[];
  proxy: { readonly url: string } | null;
  progressing: boolean;
}

/**
 * Health from the serving spec and the ready active instances; the message is the record's,
 * then `notes`, then why active instances are not ready.
 */
export function describeWorkloadStatus(
  workload: StatusWorkload,
  host: string,
  drift: string[],
  notes: (string | null)[] = [],
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
  return {
    key: record.key,
    health,
    url: workload.proxy?.url ?? `http://${host}:${record.proxyPort}`,
    image: serving?.image.digest ?? null,
    imageReference: serving?.image.reference ?? null,
    desiredReplicas: desired?.replicas ?? 0,
    readyReplicas: ready.length,
    instances: workload.instances.map((instance) => instance.status()),
    message: [record.message, ...notes, ...problems].filter(Boolean).join('; ') || null,
    drift,
  };
}

/** The status of a key the target does not know (or of a target that cannot say: `message`). */
export function missingStatus(key: string, message: string | null = null): WorkloadStatus {
  return {
    key,
    health: 'missing',
    url: null,
    image: null,
    imageReference: null,
    desiredReplicas: 0,
    readyReplicas: 0,
    instances: [],
    message,
    drift: [],
  };
}

/** `spec` is what was last applied, and it serves: applying it again is a no-op. */
export function alreadyApplied(
  record: { serving: WorkloadSpec | null; desired: WorkloadSpec | null },
  spec: WorkloadSpec,
): boolean {
  const { serving, desired } = record;
  return serving !== null && desired !== null && sameSpec(serving, spec) && sameSpec(desired, spec);
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
