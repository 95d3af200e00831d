/**
 * The objects the target makes itself: a minimal Deployment + Service for `apply(spec)` (a
 * `WorkloadSpec` alone, no rendered manifests), and the variants a rollout runs beside the
 * stable objects (blue-green slots, the canary, the preview Service).
 */
import { invalidInput } from '../../../errors.js';
import type { WorkloadSpec } from '../target.js';
import {
  PREVIEW_LABEL,
  SLOT_LABEL,
  deploymentSpec,
  managedKinds,
  type Manifest,
  type ManifestMetadata,
} from './inventory.js';

export const slots = ['blue', 'green'] as const;
export type Slot = (typeof slots)[number];
export const otherSlot = (slot: Slot): Slot => (slot === 'blue' ? 'green' : 'blue');
export const isSlot = (value: unknown): value is Slot => slots.includes(value as Slot);

/** `reference` pinned by `digest` (a reference without one gets `@<digest>`; a tag may stay). */
export function pinnedImage(image: WorkloadSpec['image']): string {
  return image.reference.includes('@') ? image.reference : `${image.reference}@${image.digest}`;
}

/**
 * A Deployment (rolling update, one surge, none unavailable, readiness `GET <path or />` on
 * the port) and a ClusterIP Service on port 80, both named `name`, selecting
 * `app.kubernetes.io/instance: <name>`.
 */
export function workloadManifests(spec: WorkloadSpec, name: string): Manifest[] {
  const selector = { 'app.kubernetes.io/instance': name };
  const labels = { 'app.kubernetes.io/name': name, ...selector };
  const readiness = spec.readiness ?? { path: '/' };
  const container = omitUndefined({
    name: 'app',
    image: pinnedImage(spec.image),
    command: spec.command,
    args: spec.args,
    env: Object.entries(spec.env).map(([envName, value]) => ({ name: envName, value })),
    ports: [{ name: 'http', containerPort: spec.port }],
    readinessProbe: {
      httpGet: { path: readiness.path, port: spec.port },
      periodSeconds: readiness.periodSeconds ?? 10,
      timeoutSeconds: readiness.timeoutSeconds ?? 1,
      failureThreshold: readiness.failureThreshold ?? 3,
    },
  });
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, labels },
      spec: {
        replicas: spec.replicas,
        selector: { matchLabels: selector },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: { metadata: { labels }, spec: { containers: [container] } },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, labels },
      spec: { selector, ports: [{ name: 'http', port: 80, targetPort: spec.port }] },
    },
  ];
}

/** Manifests in apply order (`managedKinds`), stable within a kind. */
export function inApplyOrder(manifests: readonly Manifest[]): Manifest[] {
  const rank = (m: Manifest) => managedKinds.findIndex((k) => k.kind === m.kind);
  return [...manifests].sort((a, b) => rank(a) - rank(b));
}

const selectorOf = (service: Manifest) =>
  (service.spec as { selector?: Record<string, string> } | undefined)?.selector ?? {};

/** The Services among `manifests` whose selector picks the Deployment's pods. */
export function selectingServices(
  manifests: readonly Manifest[],
  deployment: Manifest,
): Manifest[] {
  const podLabels = deploymentSpec(structuredClone(deployment)).template?.metadata?.labels ?? {};
  return manifests.filter((m) => {
    if (m.kind !== 'Service') return false;
    const selector = Object.entries(selectorOf(m));
    return selector.length > 0 && selector.every(([label, value]) => podLabels[label] === value);
  });
}

/**
 * The Deployment as a variant beside the stable one: `<name>-<variant>`, with the slot label on
 * it, in its selector and on its pods (a new object: a Deployment's selector never changes).
 */
export function variantOf(deployment: Manifest, variant: Slot | 'canary', replicas?: number) {
  const object = structuredClone(deployment);
  object.metadata.name = `${deployment.metadata.name}-${variant}`;
  object.metadata.labels = { ...object.metadata.labels, [SLOT_LABEL]: variant };
  const spec = deploymentSpec(object);
  spec.selector = {
    ...spec.selector,
    matchLabels: { ...spec.selector?.matchLabels, [SLOT_LABEL]: variant },
  };
  const template = (spec.template ??= {});
  template.metadata = {
    ...template.metadata,
    labels: { ...template.metadata?.labels, [SLOT_LABEL]: variant },
  };
  if (replicas !== undefined) spec.replicas = replicas;
  return object;
}

export function withReplicas(deployment: Manifest, replicas: number): Manifest {
  const object = structuredClone(deployment);
  deploymentSpec(object).replicas = replicas;
  return object;
}

function withSlotSelector(service: Manifest, slot: Slot): Manifest {
  const object = structuredClone(service);
  object.spec = {
    ...(object.spec as object),
    selector: { ...selectorOf(service), [SLOT_LABEL]: slot },
  };
  return object;
}

/** `<service>-preview`: ClusterIP, the same ports, only the new slot's pods. */
function previewOf(service: Manifest, slot: Slot): Manifest {
  const ports = (service.spec as { ports?: Record<string, unknown>[] } | undefined)?.ports ?? [];
  const metadata: ManifestMetadata = {
    name: `${service.metadata.name}-preview`,
    namespace: service.metadata.namespace,
    labels: { ...service.metadata.labels, [PREVIEW_LABEL]: 'true' },
    annotations: { ...service.metadata.annotations },
  };
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: {
      type: 'ClusterIP',
      selector: { ...selectorOf(service), [SLOT_LABEL]: slot },
      ports: ports.map(({ nodePort: _nodePort, ...port }) => port),
    },
  };
}

/** What a blue-green rollout into `slot` applies, and when. */
export interface BlueGreenPlan {
  /** The Deployment's name in the manifests (its slots are `<base>-blue`, `<base>-green`). */
  base: string;
  slot: Slot;
  /** `<base>-<slot>`, applied first. */
  deployment: Manifest;
  /** The Services selecting the Deployment, now also by slot: applied at the switch. */
  services: Manifest[];
  /** HorizontalPodAutoscalers of the Deployment, retargeted to the slot: applied at the switch. */
  autoscalers: Manifest[];
  /** One per switched Service, selecting only the new slot, until the switch. */
  previews: Manifest[];
  /** Everything else, applied before the new slot starts. */
  rest: Manifest[];
}

export function blueGreenPlan(manifests: readonly Manifest[], slot: Slot): BlueGreenPlan {
  const original = manifests.find((m) => m.kind === 'Deployment')!;
  const base = original.metadata.name;
  const services = selectingServices(manifests, original);
  if (services.length === 0)
    throw invalidInput(
      `a blue-green rollout switches a Service's selector, and no Service selects Deployment ${base}'s pods`,
    );
  const autoscalers = manifests.filter((m) => {
    const target = (m.spec as { scaleTargetRef?: { kind?: string; name?: string } } | undefined)
      ?.scaleTargetRef;
    return (
      m.kind === 'HorizontalPodAutoscaler' && target?.kind === 'Deployment' && target.name === base
    );
  });
  const deployment = variantOf(original, slot);
  return {
    base,
    slot,
    deployment,
    services: services.map((s) => withSlotSelector(s, slot)),
    autoscalers: autoscalers.map((hpa) => {
      const object = structuredClone(hpa);
      const spec = object.spec as { scaleTargetRef: { name: string } };
      spec.scaleTargetRef = { ...spec.scaleTargetRef, name: deployment.metadata.name };
      return object;
    }),
    previews: services.map((s) => previewOf(s, slot)),
    rest: manifests.filter(
      (m) => m !== original && !services.includes(m) && !autoscalers.includes(m),
    ),
  };
}

function omitUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
