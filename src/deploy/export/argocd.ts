/**
 * An Argo CD Application per environment, for teams that let Argo CD sync the deploy repo:
 * it points at `envs/<env>/` (the rendered manifests Valve commits) with the environment's
 * sync options as its sync policy.
 */
import { stringify } from 'yaml';
import { defaultSyncOptions, type SyncOptions } from '../appspec.js';
import { labelsFor } from '../render.js';

export interface ArgoApplicationInput {
  team: string;
  app: string;
  env: string;
  /** Clone URL of the deploy repo as Argo CD reaches it. */
  repoURL: string;
  /** Branch, tag or commit to follow (default `main`, the branch Valve commits to). */
  targetRevision?: string;
  /**
   * Cluster and namespace to deploy into: `server` (default the cluster Argo CD runs in) or
   * the cluster's `name` in Argo CD, and `namespace` (default `<team>-<env>`).
   */
  destination?: { server?: string; name?: string; namespace?: string };
  /** The environment's `sync` options from the app spec (default: all on). */
  sync?: SyncOptions;
  /** Argo CD project (default `default`). */
  project?: string;
  /** Namespace Argo CD watches for Applications (default `argocd`). */
  argoNamespace?: string;
}

export const defaultNamespace = (team: string, env: string) => `${team}-${env}`;

export function argoApplication(input: ArgoApplicationInput): string {
  const sync = input.sync ?? defaultSyncOptions;
  const destination = input.destination ?? {};
  const labels = labelsFor(input.team, input.app, input.env);
  const application = {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Application',
    metadata: {
      name: `${input.team}-${input.app}-${input.env}`,
      namespace: input.argoNamespace ?? 'argocd',
      labels: {
        'app.kubernetes.io/name': labels['app.kubernetes.io/name'],
        'app.kubernetes.io/instance': labels['app.kubernetes.io/instance'],
        'valve.dev/team': input.team,
        'valve.dev/environment': input.env,
      },
    },
    spec: {
      project: input.project ?? 'default',
      source: {
        repoURL: input.repoURL,
        targetRevision: input.targetRevision ?? 'main',
        path: `envs/${input.env}`,
      },
      destination: {
        ...(destination.name
          ? { name: destination.name }
          : { server: destination.server ?? 'https://kubernetes.default.svc' }),
        namespace: destination.namespace ?? defaultNamespace(input.team, input.env),
      },
      syncPolicy: {
        // Without `automated` Argo CD only reports drift and waits for a manual sync.
        ...(sync.automated && { automated: { prune: sync.prune, selfHeal: sync.selfHeal } }),
        syncOptions: ['CreateNamespace=true'],
      },
    },
  };
  return stringify(application, { lineWidth: 0, aliasDuplicateObjects: false });
}
