/**
 * What an environment's folder of the deploy repo asks for (`envs/<env>/` at `main`), read back
 * from its manifests by manifests.ts, and its fingerprint. The reading of the repo itself, once
 * per change of a folder, is desired-state-cache.ts.
 */
import { createHash } from 'node:crypto';
import { canonical, type ManifestResource } from './diff.js';
import { readDesiredEnvironment, type DesiredWorkload } from './manifests.js';
import { defaultSyncPolicy, type SyncPolicy } from './reconcile-plan.js';

/** What the target runs for an environment: the desired workload without its key, target and policy. */
export type DesiredWorkloadSpec = Omit<DesiredWorkload, 'key' | 'target' | 'sync'>;

/** What an environment's folder of the deploy repo asks for. */
export interface DesiredState {
  resources: ManifestResource[];
  /** Null when the folder has no Deployment. */
  workload: DesiredWorkloadSpec | null;
  /** Name of the target (`local`, or one the team registered). */
  target: string;
  policy: SyncPolicy;
  sourceCommit: string | null;
}

export const envDir = (environment: string) => `envs/${environment}`;
export const appKey = (team: string, app: string) => `${team}/${app}`;
export const deployRepoPath = (team: string, app: string) => `${team}/${app}.deploy.git`;

/** Reads an environment's manifest files into the desired state; throws FileValidationError naming file and line. */
export function readDesiredState(files: { path: string; text: string }[], key = ''): DesiredState {
  const { resources, workload, sourceCommit } = readDesiredEnvironment(files, key);
  if (!workload)
    return { resources, workload: null, target: 'local', policy: defaultSyncPolicy, sourceCommit };
  const { key: _key, target, sync, ...spec } = workload;
  return {
    resources,
    workload: spec,
    target: target || 'local',
    policy: { ...defaultSyncPolicy, ...sync },
    sourceCommit: sourceCommit || null,
  };
}

/** Fingerprint of a desired state: the workload as the target gets it, and every manifest. */
export function desiredHash(key: string, desired: DesiredState): string {
  const state = {
    workload: desired.workload && { key, ...desired.workload },
    target: desired.target,
    resources: desired.resources.map((r) => ({ kind: r.kind, name: r.name, object: r.object })),
  };
  return createHash('sha256').update(canonical(state)).digest('hex');
}
