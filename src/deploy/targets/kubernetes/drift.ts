/**
 * Drift: a live object that no longer matches what Valve applied. Two sources, one sentence
 * per object: the fields Valve set that now hold something else (compared with the manifests
 * this process applied; the server's defaults are not compared), and `metadata.managedFields`
 * entries of other managers that changed spec or data (`kubectl edit`, `kubectl scale`), which
 * also works after a restart, when the applied manifests are no longer in memory.
 */
import type { LiveObject } from './client.js';
import { objectId, type Manifest } from './inventory.js';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The paths where `live` differs from `desired`, looking only at what `desired` sets: fields
 * the server added (defaults, status) are not differences. Lists compare item by item and must
 * have the same length. `8080` and `"8080"` are equal (int-or-string fields).
 */
export function differences(desired: unknown, live: unknown, path = ''): string[] {
  if (isObject(desired)) {
    if (Object.keys(desired).length === 0) return [];
    if (!isObject(live)) return [path || '.'];
    return Object.entries(desired).flatMap(([key, value]) =>
      differences(value, live[key], path ? `${path}.${key}` : key),
    );
  }
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) return [path];
    return desired.flatMap((item, i) => differences(item, live[i], `${path}[${i}]`));
  }
  if (desired === undefined || desired === null) return [];
  return desired === live || String(desired) === String(live) ? [] : [path];
}

/** What of an applied manifest is compared with the live object. */
function comparable(manifest: Manifest): Record<string, unknown> {
  const { apiVersion: _v, kind: _k, metadata, status: _s, ...rest } = manifest;
  return { metadata: { labels: metadata.labels, annotations: metadata.annotations }, ...rest };
}

interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  subresource?: string;
  fieldsV1?: unknown;
}

/** Other managers' `Update`s of spec, data or labels, as `manager -> [spec.replicas, ...]`. */
export function changesByOthers(live: LiveObject, fieldManager: string): Map<string, string[]> {
  const changes = new Map<string, string[]>();
  const entries = (live.metadata.managedFields ?? []) as ManagedFieldsEntry[];
  for (const entry of entries) {
    if (entry.operation !== 'Update' || entry.subresource || !entry.manager) continue;
    if (entry.manager === fieldManager) continue;
    const fields = fieldPaths(entry.fieldsV1).filter(
      (path) =>
        path.startsWith('spec.') || path.startsWith('data.') || path.startsWith('metadata.labels.'),
    );
    if (fields.length > 0) changes.set(entry.manager, fields);
  }
  return changes;
}

/** `{ "f:spec": { "f:replicas": {} } }` -> `["spec.replicas"]` (list items by key are cut at the list). */
function fieldPaths(fields: unknown, prefix = ''): string[] {
  if (!isObject(fields)) return [];
  const paths: string[] = [];
  for (const [key, child] of Object.entries(fields)) {
    if (key === '.') continue;
    if (!key.startsWith('f:')) {
      if (prefix) paths.push(prefix);
      continue;
    }
    const path = prefix ? `${prefix}.${key.slice(2)}` : key.slice(2);
    const below = isObject(child) && Object.keys(child).length > 0 ? fieldPaths(child, path) : [];
    paths.push(...(below.length > 0 ? below : [path]));
  }
  return [...new Set(paths)];
}

/**
 * The replicas of a Deployment that an autoscaler of the set targets are the autoscaler's to
 * change: not compared.
 */
export function withoutAutoscaledReplicas(applied: readonly Manifest[]): Manifest[] {
  const scaled = new Set(
    applied
      .filter((m) => m.kind === 'HorizontalPodAutoscaler')
      .map(
        (m) =>
          (m.spec as { scaleTargetRef?: { kind?: string; name?: string } } | undefined)
            ?.scaleTargetRef,
      )
      .filter((ref) => ref?.kind === 'Deployment')
      .map((ref) => ref!.name),
  );
  return applied.map((manifest) => {
    if (manifest.kind !== 'Deployment' || !scaled.has(manifest.metadata.name)) return manifest;
    const copy = structuredClone(manifest);
    delete (copy.spec as { replicas?: number } | undefined)?.replicas;
    return copy;
  });
}

const listed = (paths: string[]) =>
  paths.slice(0, 3).join(', ') + (paths.length > 3 ? ` and ${paths.length - 3} more` : '');

/**
 * One sentence per drifted object: `Deployment/hello: spec.replicas differs from the applied
 * manifest (changed by kubectl-edit)`, `Service/hello was deleted`. `applied` null: only what
 * managedFields tell (after a restart). Objects Valve never applied in this process and no one
 * else touched are fine.
 */
export function driftOf(
  applied: readonly Manifest[] | null,
  live: readonly LiveObject[],
  fieldManager: string,
): string[] {
  const liveById = new Map(live.map((object) => [objectId(object), object]));
  const sentences: string[] = [];
  const reported = new Set<string>();
  for (const manifest of applied ?? []) {
    const id = objectId(manifest);
    const object = liveById.get(id);
    reported.add(id);
    if (!object) {
      sentences.push(`${id} was deleted`);
      continue;
    }
    const paths = differences(comparable(manifest), object);
    const others = changesByOthers(object, fieldManager);
    if (paths.length === 0) continue;
    const by = others.size > 0 ? ` (changed by ${[...others.keys()].join(', ')})` : '';
    sentences.push(
      `${id}: ${listed(paths)} differ${paths.length === 1 ? 's' : ''} from the applied manifest${by}`,
    );
  }
  for (const object of live) {
    const id = objectId(object);
    if (reported.has(id)) continue;
    for (const [manager, paths] of changesByOthers(object, fieldManager))
      sentences.push(`${id}: ${listed(paths)} changed by ${manager}`);
  }
  return sentences;
}
