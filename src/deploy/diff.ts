/**
 * Compare: the desired resources (the deploy repo's manifests) against the live ones, paired
 * by `Kind/name`, field by field. Targets that do not keep Kubernetes objects (local, podman)
 * have no live manifests to read, so their live resources are the manifests as last applied
 * with the facts the target reports laid over them (image, replicas, and env where the target
 * says). A live resource with no desired one is what prune removes.
 */
import type { HealthState, WorkloadStatus } from './targets/target.js';

/** One manifest of an environment, as read from the deploy repo. */
export interface ManifestResource {
  /** Path in the deploy repo, e.g. `envs/dev/deployment.yaml`. */
  file: string;
  kind: string;
  name: string;
  object: Record<string, unknown>;
  /** Line in `file` where the document starts. */
  line: number;
}

/** One difference: a field (`path`), or a whole resource (`path` ''). */
export interface DiffItem {
  /** `Kind/name`, e.g. `Deployment/hello`. */
  resource: string;
  /** e.g. `spec.template.spec.containers[0].image`; '' for the whole resource. */
  path: string;
  /** null where the desired state has no such field or resource. */
  desired: unknown;
  /** null where the live state has no such field or resource. */
  live: unknown;
  /** The resource is live but no longer in the deploy repo: a sync with prune deletes it. */
  prune?: true;
}

export const resourceId = (resource: { kind: string; name: string }) =>
  `${resource.kind}/${resource.name}`;

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The live resources of a local or podman workload: `baseline` (the manifests last applied)
 * with the target's facts laid over the Deployment. Nothing runs (health `missing` and no
 * image): no live resources at all.
 */
export function liveResources(
  baseline: ManifestResource[],
  live: WorkloadStatus,
): ManifestResource[] {
  if (live.health === 'missing' && !live.image) return [];
  return baseline.map((resource) => {
    if (resource.kind !== 'Deployment') return resource;
    const object = structuredClone(resource.object);
    const spec = isObject(object.spec) ? object.spec : (object.spec = {});
    spec.replicas = live.desiredReplicas;
    const template = isObject(spec.template) ? spec.template : undefined;
    const podSpec = template && isObject(template.spec) ? template.spec : undefined;
    const container = Array.isArray(podSpec?.containers) ? podSpec.containers[0] : undefined;
    if (isObject(container)) {
      const image = live.imageReference ?? imageWithDigest(container.image, live.image);
      if (image) container.image = image;
      // A target that reports the environment it runs with (optional in the interface).
      const env = (live as { env?: Record<string, string> }).env;
      if (env) container.env = Object.entries(env).map(([name, value]) => ({ name, value }));
    }
    return { ...resource, object };
  });
}

function imageWithDigest(reference: unknown, digest: string | null): string | null {
  if (!digest) return null;
  const name = typeof reference === 'string' ? reference.split('@')[0]! : '';
  return name ? `${name}@${digest}` : digest;
}

/** Every difference between desired and live, resource by resource, field by field. */
export function diffResources(desired: ManifestResource[], live: ManifestResource[]): DiffItem[] {
  const items: DiffItem[] = [];
  const liveById = new Map(live.map((resource) => [resourceId(resource), resource]));
  for (const resource of desired) {
    const id = resourceId(resource);
    const other = liveById.get(id);
    liveById.delete(id);
    if (!other) items.push({ resource: id, path: '', desired: resource.object, live: null });
    else compare(id, '', resource.object, other.object, items);
  }
  for (const [id, resource] of liveById)
    items.push({ resource: id, path: '', desired: null, live: resource.object, prune: true });
  return items;
}

function compare(resource: string, path: string, desired: unknown, live: unknown, out: DiffItem[]) {
  if (isObject(desired) && isObject(live)) {
    const keys = [...Object.keys(desired), ...Object.keys(live).filter((k) => !(k in desired))];
    for (const key of keys)
      compare(resource, path ? `${path}.${key}` : key, desired[key], live[key], out);
    return;
  }
  if (Array.isArray(desired) && Array.isArray(live)) {
    for (let i = 0; i < Math.max(desired.length, live.length); i++)
      compare(resource, `${path}[${i}]`, desired[i], live[i], out);
    return;
  }
  if (canonical(desired) === canonical(live)) return;
  out.push({ resource, path, desired: desired ?? null, live: live ?? null });
}

/** JSON with sorted keys, so key order never counts as a difference. */
export function canonical(value: unknown): string {
  return JSON.stringify(value ?? null, (_key, inner: unknown) =>
    isObject(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : inner,
  );
}

/**
 * Health per resource: the workload's own health for its Deployment; a Service is as healthy
 * as the address it stands for (serving or not); other kinds the target does not run are
 * healthy once applied.
 */
export function resourceHealth(
  resource: { kind: string },
  live: WorkloadStatus,
  applied: boolean,
): HealthState {
  if (resource.kind === 'Deployment') return live.health;
  if (resource.kind === 'Service')
    return live.url && live.health !== 'missing' ? 'healthy' : 'missing';
  return applied ? 'healthy' : 'missing';
}
