/**
 * What the Kubernetes target owns: the kinds it applies, prunes and deletes, the labels that
 * mark an object as part of one workload's inventory, and the names it derives from a key.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ValveError } from '../../../errors.js';

/** Every applied object carries it; its value names the workload (`<team>.<app>.<env>`). */
export const INVENTORY_LABEL = 'valve.dev/inventory';
/** Blue-green slot (`blue`, `green`) or `canary`, on a Deployment, its pods and the selectors. */
export const SLOT_LABEL = 'valve.dev/slot';
/** On a blue-green preview Service (`<service>-preview`), which is not the workload's address. */
export const PREVIEW_LABEL = 'valve.dev/preview';
/** The workload key as Valve knows it (`team-a/hello/dev`); label values cannot hold `/`. */
export const KEY_ANNOTATION = 'valve.dev/key';
/** On the Deployment: the rollout spec as JSON (written by render.ts). */
export const ROLLOUT_ANNOTATION = 'valve.dev/rollout';

/**
 * The kinds the target manages, in the order it applies them (what a Deployment mounts first,
 * what points at a Deployment after). Prune and delete list exactly these.
 */
export const managedKinds = [
  { kind: 'ConfigMap', apiVersion: 'v1' },
  { kind: 'Deployment', apiVersion: 'apps/v1' },
  { kind: 'Service', apiVersion: 'v1' },
  { kind: 'Ingress', apiVersion: 'networking.k8s.io/v1' },
  { kind: 'HorizontalPodAutoscaler', apiVersion: 'autoscaling/v2' },
  { kind: 'PodDisruptionBudget', apiVersion: 'policy/v1' },
] as const;
export type ManagedKind = (typeof managedKinds)[number]['kind'];

export interface ManifestMetadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

/** One object as the target applies it. */
export interface Manifest {
  apiVersion: string;
  kind: ManagedKind;
  metadata: ManifestMetadata;
  [field: string]: unknown;
}

/** `Kind/name`, how objects are paired (as in diff.ts). */
export const objectId = (object: { kind?: string; metadata?: { name?: string } }) =>
  `${object.kind}/${object.metadata?.name}`;

export const inventorySelector = (inventory: string) => `${INVENTORY_LABEL}=${inventory}`;

/** `team-a/hello/dev` -> `team-a.hello.dev`: a label value (63 characters, alphanumeric ends). */
export function inventoryOf(key: string): string {
  const value = key
    .split('/')
    .map((part) => part.replace(/[^A-Za-z0-9_.-]+/g, '-'))
    .join('.')
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return value.length <= 63 && value.length > 0 ? value : shortened(value, key, 63);
}

/**
 * The object name `apply(spec)` uses for a key: `team-a/hello/dev` -> `team-a-hello-dev`, a
 * DNS-1035 label (a Service name) short enough for the `-canary` / `-green` suffixes.
 */
export function resourceNameOf(key: string): string {
  let name = key
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-+|-+$/g, '');
  if (!/^[a-z]/.test(name)) name = `w-${name}`.replace(/-+$/, '');
  return name.length <= 55 ? name : shortened(name, key, 55);
}

function shortened(value: string, key: string, max: number): string {
  const hash = createHash('sha256').update(key).digest('hex').slice(0, 8);
  const head = value.slice(0, max - 9).replace(/[^A-Za-z0-9]+$/, '');
  return `${head}-${hash}`;
}

const manifestSchema = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  metadata: z.looseObject({
    name: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a lowercase DNS name'),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
});

/**
 * Validates what `applyManifests` was given: plain manifests, or the `{ file, kind, name,
 * object, line }` entries manifests.ts reads back (the error then names file and line). Only
 * the managed kinds are accepted (what prune cannot find, it must not create), in `namespace`.
 */
export function readManifests(entries: readonly object[], namespace: string): Manifest[] {
  const seen = new Set<string>();
  return entries.map((entry, index) => {
    const wrapped = entry as { object?: unknown; file?: unknown; line?: unknown };
    const raw = 'apiVersion' in entry || !wrapped.object ? entry : wrapped.object;
    const where =
      typeof wrapped.file === 'string'
        ? `${wrapped.file}${typeof wrapped.line === 'number' ? `:${wrapped.line}` : ''}`
        : `resource ${index + 1}`;
    const invalid = (message: string) =>
      new ValveError('DEPLOY_MANIFEST_INVALID', `${where}: ${message}`, { file: wrapped.file });
    const parsed = manifestSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw invalid(`${issue.path.join('.') || 'manifest'}: ${issue.message}`);
    }
    const manifest = structuredClone(parsed.data) as Manifest;
    const known = managedKinds.find((k) => k.kind === manifest.kind);
    if (!known)
      throw invalid(
        `kind ${manifest.kind} is not one the Kubernetes target manages (${managedKinds.map((k) => k.kind).join(', ')})`,
      );
    if (manifest.apiVersion !== known.apiVersion)
      throw invalid(`expected apiVersion ${known.apiVersion} for a ${manifest.kind}`);
    if (manifest.metadata.namespace && manifest.metadata.namespace !== namespace)
      throw invalid(
        `namespace ${manifest.metadata.namespace}: this target applies into namespace ${namespace}`,
      );
    const id = objectId(manifest);
    if (seen.has(id)) throw invalid(`${id} appears twice`);
    seen.add(id);
    return manifest;
  });
}

/**
 * The manifest as applied: in the namespace, with the inventory label and the key annotation
 * (a Deployment's pods get the inventory label too, so they can be listed by it).
 */
export function labelled(manifest: Manifest, key: string, namespace: string): Manifest {
  const inventory = inventoryOf(key);
  const object = structuredClone(manifest);
  object.metadata.namespace = namespace;
  object.metadata.labels = {
    ...object.metadata.labels,
    'app.kubernetes.io/managed-by': 'valve',
    [INVENTORY_LABEL]: inventory,
  };
  object.metadata.annotations = { ...object.metadata.annotations, [KEY_ANNOTATION]: key };
  if (object.kind === 'Deployment') {
    const template = (deploymentSpec(object).template ??= {}) as {
      metadata?: { labels?: Record<string, string> };
    };
    template.metadata = {
      ...template.metadata,
      labels: { ...template.metadata?.labels, [INVENTORY_LABEL]: inventory },
    };
  }
  return object;
}

export interface DeploymentSpecShape {
  replicas?: number;
  selector?: { matchLabels?: Record<string, string> };
  template?: {
    metadata?: { labels?: Record<string, string>; [field: string]: unknown };
    spec?: {
      containers?: { name?: string; image?: string; ports?: { containerPort?: number }[] }[];
    };
  };
  [field: string]: unknown;
}

export function deploymentSpec(manifest: Manifest): DeploymentSpecShape {
  return (manifest.spec ??= {}) as DeploymentSpecShape;
}

/** The live objects of an inventory that are not in the applied set: what prune deletes. */
export function objectsToPrune<T extends { kind?: string; metadata?: { name?: string } }>(
  keep: ReadonlySet<string>,
  live: readonly T[],
): T[] {
  return live.filter((object) => !keep.has(objectId(object)));
}
