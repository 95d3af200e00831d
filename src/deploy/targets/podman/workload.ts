import { createHash } from 'node:crypto';
import type { WorkloadProxy } from '../local/proxy.js';
import type { HealthState, WorkloadSpec, WorkloadStatus } from '../target.js';
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
  const drift = [
    ...active
      .filter((instance) => instance.drift)
      .map((instance) => `instance ${instance.id}: ${instance.drift}`),
    ...workload.strays.map((name) => `container ${name} is not part of the workload`),
  ];
  return {
    key: record.key,
    health,
    url: workload.proxy?.url ?? `http://${host}:${record.proxyPort}`,
    image: serving?.image.digest ?? null,
    imageReference: serving?.image.reference ?? null,
    desiredReplicas: desired?.replicas ?? 0,
    readyReplicas: ready.length,
    instances: workload.instances.map((instance) => instance.status()),
    message: [record.message, listError, ...problems].filter(Boolean).join('; ') || null,
    drift,
  };
}

export function missing(key: string): WorkloadStatus {
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

/** Readable, unique and valid in a container name: `team-a/hello/dev` -> `team-a_hello_dev-1a2b3c4d`. */
export function nameOf(key: string): string {
  const readable = key.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
  return `${readable}-${createHash('sha256').update(key).digest('hex').slice(0, 8)}`;
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
