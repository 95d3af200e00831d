/**
 * Health from status: what a Deployment's status says about its rollout, and a workload's
 * `WorkloadStatus` folded from its live objects. Pure functions over what the API returned.
 */
import type { V1Pod } from '@kubernetes/client-node';
import {
  worstHealth,
  type HealthState,
  type InstanceState,
  type InstanceStatus,
  type RolloutStatus,
  type WorkloadStatus,
} from '../target.js';
import type { LiveObject } from './client.js';
import { PREVIEW_LABEL, SLOT_LABEL } from './inventory.js';

interface DeploymentStatusShape {
  observedGeneration?: number;
  replicas?: number;
  updatedReplicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
}

export interface DeploymentHealth {
  health: HealthState;
  /** Why it is not healthy; null when it is. */
  message: string | null;
  /** The controller gave up on this rollout (`ProgressDeadlineExceeded`): waiting will not help. */
  failed: boolean;
}

export const desiredReplicasOf = (deployment: LiveObject) =>
  (deployment.spec as { replicas?: number } | undefined)?.replicas ?? 1;

/**
 * - `missing`: no Deployment;
 * - `degraded`: `Progressing` is False with `ProgressDeadlineExceeded` (the rollout failed), or
 *   a finished rollout (`NewReplicaSetAvailable`) has fewer available replicas than desired;
 * - `healthy`: the controller has seen the current generation and every desired replica is
 *   updated and available, with no old ones left;
 * - `progressing`: anything else (a rollout under way).
 */
export function deploymentHealth(deployment: LiveObject | undefined): DeploymentHealth {
  if (!deployment)
    return { health: 'missing', message: 'the Deployment does not exist', failed: false };
  const name = deployment.metadata.name;
  const status = (deployment.status ?? {}) as DeploymentStatusShape;
  const desired = desiredReplicasOf(deployment);
  const progressing = status.conditions?.find((c) => c.type === 'Progressing');
  if (progressing?.reason === 'ProgressDeadlineExceeded')
    return {
      health: 'degraded',
      message: `deployment ${name}: ${progressing.message ?? 'progress deadline exceeded'}`,
      failed: true,
    };
  const observed = (status.observedGeneration ?? 0) >= (deployment.metadata.generation ?? 0);
  const updated = status.updatedReplicas ?? 0;
  const available = status.availableReplicas ?? 0;
  const total = status.replicas ?? 0;
  if (observed && updated === desired && available === desired && total === desired)
    return { health: 'healthy', message: null, failed: false };
  const detail = !observed
    ? 'waiting for the controller to see the new generation'
    : updated < desired
      ? `${updated} of ${desired} replicas updated`
      : total > updated
        ? `${total - updated} old replica(s) terminating`
        : `${available} of ${desired} replicas available`;
  if (observed && progressing?.reason === 'NewReplicaSetAvailable' && available < desired)
    return { health: 'degraded', message: `deployment ${name}: ${detail}`, failed: false };
  return { health: 'progressing', message: `deployment ${name}: ${detail}`, failed: false };
}

/** The image of a Deployment's (or pod's) first container, split into reference and digest. */
export function imageOfTemplate(podSpec: unknown): { reference: string; digest: string } | null {
  const containers = (podSpec as { containers?: { image?: string }[] } | undefined)?.containers;
  const reference = containers?.[0]?.image;
  if (!reference) return null;
  const at = reference.indexOf('@');
  return { reference, digest: at >= 0 ? reference.slice(at + 1) : reference };
}

const templateSpecOf = (deployment: LiveObject) =>
  (deployment.spec as { template?: { spec?: unknown } } | undefined)?.template?.spec;

export function instanceOf(pod: V1Pod, port: number): InstanceStatus {
  const status = pod.status ?? {};
  const containers = status.containerStatuses ?? [];
  const ready = status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const image = imageOfTemplate(pod.spec);
  let state: InstanceState;
  if (pod.metadata?.deletionTimestamp) state = 'stopping';
  else if (status.phase === 'Succeeded' || status.phase === 'Failed') state = 'stopped';
  else if (containers.some((c) => c.state?.waiting?.reason === 'CrashLoopBackOff'))
    state = 'restarting';
  else if (status.phase === 'Running') state = ready ? 'ready' : 'unready';
  else state = 'starting';
  const startedAt = status.startTime ?? pod.metadata?.creationTimestamp;
  return {
    id: pod.metadata?.name ?? '',
    pid: 0,
    port,
    image: image?.digest ?? '',
    imageReference: image?.reference ?? '',
    healthy: ready,
    state,
    startedAt: startedAt ? new Date(startedAt).toISOString() : '',
    restarts: containers.reduce((sum, c) => sum + (c.restartCount ?? 0), 0),
  };
}

export interface WorkloadObjects {
  key: string;
  namespace: string;
  deployments: LiveObject[];
  services: LiveObject[];
  ingresses: LiveObject[];
  pods: V1Pod[];
}

export interface WorkloadFacts {
  /** An apply of this key is under way. */
  applying: boolean;
  /** What the last failed apply said; null after a successful one. */
  lastFailure: string | null;
  drift: string[];
  rollout?: RolloutStatus;
}

/**
 * Health is the worst of the Deployments' (idle blue-green slots, scaled to zero, left out);
 * `progressing` while an apply runs; `degraded` with the failure's message when the last apply
 * failed and something still serves. The url is the first Ingress host, else the first
 * Service's cluster DNS name; the image is the serving Deployment's (the one the Service's
 * selector picks, else the one with most replicas).
 */
export function workloadStatus(objects: WorkloadObjects, facts: WorkloadFacts): WorkloadStatus {
  const { key, deployments } = objects;
  const counted = deployments.filter(
    (d) => !(d.metadata.labels?.[SLOT_LABEL] && desiredReplicasOf(d) === 0),
  );
  const healths = counted.map(deploymentHealth);
  let health: HealthState =
    deployments.length === 0 ? 'missing' : worstHealth(healths.map((h) => h.health));
  let message = healths.find((h) => h.message && h.health !== 'healthy')?.message ?? null;
  if (facts.applying) health = 'progressing';
  else if (facts.lastFailure) {
    message = facts.lastFailure;
    if (health === 'healthy' || health === 'progressing') health = 'degraded';
  }
  const serving = servingDeployment(deployments, objects.services);
  const image = serving ? imageOfTemplate(templateSpecOf(serving)) : null;
  const port = containerPort(serving);
  return {
    key,
    health,
    url: urlOf(objects),
    image: image?.digest ?? null,
    imageReference: image?.reference ?? null,
    desiredReplicas: counted.reduce((sum, d) => sum + desiredReplicasOf(d), 0),
    readyReplicas: counted.reduce(
      (sum, d) => sum + ((d.status as DeploymentStatusShape | undefined)?.readyReplicas ?? 0),
      0,
    ),
    instances: objects.pods
      .map((pod) => instanceOf(pod, port))
      .sort((a, b) => a.id.localeCompare(b.id)),
    message,
    drift: facts.drift,
    ...(facts.rollout ? { rollout: facts.rollout } : {}),
  };
}

function servingDeployment(deployments: LiveObject[], services: LiveObject[]) {
  const slot = services
    .map((s) => (s.spec as { selector?: Record<string, string> } | undefined)?.selector)
    .find((selector) => selector?.[SLOT_LABEL])?.[SLOT_LABEL];
  const inSlot = slot && deployments.find((d) => d.metadata.labels?.[SLOT_LABEL] === slot);
  if (inSlot) return inSlot;
  return [...deployments]
    .filter((d) => d.metadata.labels?.[SLOT_LABEL] !== 'canary')
    .sort((a, b) => desiredReplicasOf(b) - desiredReplicasOf(a))[0];
}

function containerPort(deployment: LiveObject | undefined): number {
  const containers = (
    templateSpecOf(deployment ?? ({ metadata: {} } as LiveObject)) as
      { containers?: { ports?: { containerPort?: number }[] }[] } | undefined
  )?.containers;
  return containers?.[0]?.ports?.[0]?.containerPort ?? 0;
}

function urlOf({ ingresses, services, namespace }: WorkloadObjects): string | null {
  for (const ingress of ingresses) {
    const spec = ingress.spec as
      { rules?: { host?: string }[]; tls?: { hosts?: string[] }[] } | undefined;
    const host = spec?.rules?.find((r) => r.host)?.host;
    if (!host) continue;
    const tls = spec?.tls?.some((t) => t.hosts?.includes(host));
    return `${tls ? 'https' : 'http'}://${host}`;
  }
  const service = services.find((s) => !s.metadata.labels?.[PREVIEW_LABEL]);
  if (!service) return null;
  return serviceUrl(service, namespace);
}

/** `http://<name>.<namespace>.svc.cluster.local[:port]` (the first port; 80 left out). */
export function serviceUrl(
  service: LiveObject | { metadata: { name?: string }; spec?: unknown },
  namespace: string,
): string {
  const port = (service.spec as { ports?: { port?: number }[] } | undefined)?.ports?.[0]?.port;
  const suffix = port && port !== 80 ? `:${port}` : '';
  return `http://${service.metadata.name}.${namespace}.svc.cluster.local${suffix}`;
}
