/**
 * Rendering the app spec for one environment into plain Kubernetes manifests (the
 * rendered-manifests pattern): what the deploy repo holds in `envs/<env>/`, what Argo CD, Flux
 * or `kubectl apply -f` could apply as they are, and what Valve's own targets read back.
 *
 * The output is deterministic (same input, same bytes: fixed key order, sorted variables and
 * files, canonical JSON in annotations) so a reconcile that changes nothing commits nothing.
 */
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import {
  containerPort,
  environmentSettings,
  expandPlaceholders,
  resolveVariable,
  type AppContainer,
  type AppSpec,
  type EnvironmentSettings,
} from './appspec.js';

export interface RenderInput {
  spec: AppSpec;
  app: string;
  team: string;
  environment: string;
  /** Image reference pinned by digest: host/team/app@sha256:... */
  image: string;
  sourceCommit: string;
}

/** Every file the renderer may write into `envs/<env>/`; one not written this time is stale. */
export const RENDERED_FILES = [
  'deployment.yaml',
  'service.yaml',
  'configmap.yaml',
  'ingress.yaml',
  'hpa.yaml',
  'pdb.yaml',
] as const;
export type RenderedFile = (typeof RENDERED_FILES)[number];

/** Annotations on the Deployment that carry what Kubernetes has no field for. */
export const ANNOTATIONS = {
  rollout: 'valve.dev/rollout',
  sync: 'valve.dev/sync',
  target: 'valve.dev/target',
  sourceCommit: 'valve.dev/source-commit',
  filesChecksum: 'valve.dev/files-checksum',
} as const;
export const INVENTORY_LABEL = 'valve.dev/inventory';

/** Names of the rendered objects: the app's name, plus these suffixes. */
export const filesConfigMapName = (app: string) => `${app}-files`;
export const secretsName = (app: string) => `${app}-secrets`;
export const defaultIngressHost = (team: string, app: string, environment: string) =>
  `${app}-${environment}.${team}.valve.local`;

export function renderEnvironment(input: RenderInput): Record<string, string> {
  const objects = renderEnvironmentObjects(input);
  return Object.fromEntries(
    Object.entries(objects).map(([file, object]) => [
      file,
      stringify(object, { lineWidth: 0, aliasDuplicateObjects: false }),
    ]),
  );
}

/** The same manifests as objects, one per file (absent files are not rendered this time). */
export function renderEnvironmentObjects(
  input: RenderInput,
): Partial<Record<RenderedFile, Record<string, unknown>>> {
  const { spec, app, team, environment } = input;
  const settings = environmentSettings(spec, environment);
  const [containerName, container] = Object.entries(spec.containers)[0]!;
  const labels = labelsFor(team, app, environment);
  const selector = selectorFor(app, environment);
  const env = envEntries(spec, settings);
  const files = containerFiles(spec, container, containerName);
  const metadata = (name: string) => ({ name, labels });

  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: app,
      labels,
      annotations: {
        [ANNOTATIONS.rollout]: canonicalJson(settings.rollout),
        [ANNOTATIONS.sourceCommit]: input.sourceCommit,
        [ANNOTATIONS.sync]: canonicalJson(settings.sync),
        [ANNOTATIONS.target]: settings.target,
      },
    },
    spec: omitUndefined({
      // With an HPA the replica count is the HPA's: a fixed one here would fight it.
      replicas: settings.autoscaling ? undefined : settings.replicas,
      selector: { matchLabels: selector },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: omitUndefined({
          labels,
          // Files are mounted by subPath, which never updates: a new checksum rolls the pods.
          annotations: files.length
            ? { [ANNOTATIONS.filesChecksum]: filesChecksum(files) }
            : undefined,
        }),
        spec: omitUndefined({
          containers: [
            omitUndefined({
              name: containerName,
              image: input.image,
              command: container.command,
              args: container.args,
              env:
                env.plain.length + env.secrets.length
                  ? [
                      ...env.plain.map(([name, value]) => ({ name, value })),
                      ...env.secrets.map(([name, key]) => ({
                        name,
                        valueFrom: { secretKeyRef: { name: secretsName(app), key } },
                      })),
                    ]
                  : undefined,
              ports: containerPorts(spec),
              resources: resourcesOf(container),
              volumeMounts: files.length
                ? files.map((f) => ({
                    name: 'files',
                    mountPath: f.target,
                    subPath: f.key,
                    readOnly: true,
                  }))
                : undefined,
              readinessProbe: probeFor(spec, container.readinessProbe),
              livenessProbe: probeFor(spec, container.livenessProbe),
            }),
          ],
          volumes: files.length
            ? [
                {
                  name: 'files',
                  configMap: {
                    name: filesConfigMapName(app),
                    items: files.map((f) =>
                      omitUndefined({ key: f.key, path: f.key, mode: f.mode }),
                    ),
                  },
                },
              ]
            : undefined,
        }),
      },
    }),
  };

  const ports = servicePorts(spec);
  const objects: Partial<Record<RenderedFile, Record<string, unknown>>> = {
    'deployment.yaml': deployment,
    'service.yaml': {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: metadata(app),
      spec: { selector, ports },
    },
  };
  if (files.length) {
    objects['configmap.yaml'] = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: metadata(filesConfigMapName(app)),
      data: Object.fromEntries(files.map((f) => [f.key, f.content])),
    };
  }
  const ingressPort = ingressPortOf(spec);
  if (ingressPort) {
    objects['ingress.yaml'] = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'Ingress',
      metadata: metadata(app),
      spec: {
        rules: [
          {
            host: settings.ingress?.host ?? defaultIngressHost(team, app, environment),
            http: {
              paths: [
                {
                  path: '/',
                  pathType: 'Prefix',
                  backend: { service: { name: app, port: { name: ingressPort } } },
                },
              ],
            },
          },
        ],
      },
    };
  }
  if (settings.autoscaling) {
    objects['hpa.yaml'] = {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: metadata(app),
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: app },
        minReplicas: settings.autoscaling.minReplicas,
        maxReplicas: settings.autoscaling.maxReplicas,
        metrics: [
          {
            type: 'Resource',
            resource: {
              name: 'cpu',
              target: {
                type: 'Utilization',
                averageUtilization: settings.autoscaling.targetCPUUtilizationPercentage,
              },
            },
          },
        ],
      },
    };
  }
  if (settings.replicas > 1) {
    objects['pdb.yaml'] = {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: metadata(app),
      spec: { maxUnavailable: 1, selector: { matchLabels: selector } },
    };
  }
  return objects;
}

/** Labels of every rendered object; the inventory label is what the Kubernetes target prunes by. */
export function labelsFor(team: string, app: string, environment: string) {
  const inventory = `${team}.${app}.${environment}`;
  if (inventory.length > 63)
    throw new Error(
      `${INVENTORY_LABEL} "${inventory}" is longer than the 63 characters of a label value: shorten the app or environment name`,
    );
  return {
    'app.kubernetes.io/name': app,
    'app.kubernetes.io/instance': `${app}-${environment}`,
    'app.kubernetes.io/managed-by': 'valve',
    'valve.dev/team': team,
    'valve.dev/environment': environment,
    [INVENTORY_LABEL]: inventory,
  };
}

/** What Deployment, Service and PDB select pods by (a Deployment's selector never changes). */
export function selectorFor(app: string, environment: string) {
  return { 'app.kubernetes.io/name': app, 'app.kubernetes.io/instance': `${app}-${environment}` };
}

/** An environment's variables, resolved: plain values and secret references, each sorted by name. */
export function envEntries(spec: AppSpec, settings: EnvironmentSettings) {
  const plain: [string, string][] = [];
  const secrets: [string, string][] = [];
  for (const [name, raw] of Object.entries(settings.variables).sort(byKey)) {
    const value = resolveVariable(raw, spec.metadata);
    if ('secret' in value) secrets.push([name, value.secret]);
    else plain.push([name, value.value]);
  }
  return { plain, secrets };
}

export interface FileToMount {
  /** The ConfigMap key (and the file's name in the volume). */
  key: string;
  target: string;
  content: string;
  /** Decimal, as Kubernetes' `items[].mode` takes it (0644 -> 420). */
  mode?: number;
}

/** The container's files, sorted by key, with placeholders expanded. */
export function containerFiles(
  spec: AppSpec,
  container: AppContainer,
  containerName: string,
): FileToMount[] {
  const entries = Object.entries(container.files ?? {}).sort(byKey);
  const keys = configMapKeys(entries.map(([target]) => target));
  return entries
    .map(([target, file]) => {
      if (file.content === undefined)
        throw new Error(
          `containers.${containerName}.files.${target}.source: ${file.source} was not read (the app spec must be loaded with loadAppSpec)`,
        );
      return {
        key: keys.get(target)!,
        target,
        content: file.noExpand ? file.content : expandPlaceholders(file.content, spec.metadata),
        mode: file.mode === undefined ? undefined : parseInt(file.mode, 8),
      };
    })
    .sort((a, b) => byKey([a.key], [b.key]));
}

/** ConfigMap keys for target paths: the file name, or the whole path where names collide. */
function configMapKeys(targets: string[]): Map<string, string> {
  const clean = (s: string) => s.replace(/[^-._a-zA-Z0-9]/g, '_').slice(-200);
  const base = (t: string) => clean(t.slice(t.lastIndexOf('/') + 1));
  const count = new Map<string, number>();
  for (const t of targets) count.set(base(t), (count.get(base(t)) ?? 0) + 1);
  const keys = new Map<string, string>();
  const used = new Set<string>();
  for (const t of targets) {
    let key = count.get(base(t))! > 1 ? clean(t.slice(1)) : base(t);
    for (let n = 2; used.has(key); n++) key = `${clean(t.slice(1))}-${n}`;
    used.add(key);
    keys.set(t, key);
  }
  return keys;
}

/** The `files` value the checksum covers; the Helm chart's values carry the same map. */
export function filesValue(files: FileToMount[]) {
  return Object.fromEntries(
    files.map((f) => [
      f.key,
      omitUndefined({ content: f.content, mode: f.mode, target: f.target }),
    ]),
  );
}

export function filesChecksum(files: FileToMount[]): string {
  return createHash('sha256')
    .update(canonicalJson(filesValue(files)))
    .digest('hex');
}

/** The Service's ports: the spec's, or `http` 80 -> the container port when it declares none. */
export function servicePorts(spec: AppSpec) {
  const ports = spec.service?.ports ?? { http: { port: 80, targetPort: containerPort(spec) } };
  return Object.entries(ports).map(([name, p]) => ({
    name,
    port: p.port,
    targetPort: p.targetPort ?? p.port,
    protocol: 'protocol' in p && p.protocol ? p.protocol : 'TCP',
  }));
}

/** The container's ports: each distinct service target port (the first is the workload's port). */
export function containerPorts(spec: AppSpec) {
  const seen = new Set<string>();
  const ports: { containerPort: number; protocol: string }[] = [];
  for (const p of servicePorts(spec)) {
    const id = `${p.targetPort}/${p.protocol}`;
    if (seen.has(id)) continue;
    seen.add(id);
    ports.push({ containerPort: p.targetPort, protocol: p.protocol });
  }
  return ports;
}

/** An Ingress routes to the first TCP port the spec declares; none without declared ports. */
export function ingressPortOf(spec: AppSpec): string | null {
  if (!spec.service) return null;
  return servicePorts(spec).find((p) => p.protocol === 'TCP')?.name ?? null;
}

/** An HTTP probe; its port defaults to the container port. */
export function probeFor(spec: AppSpec, probe: AppContainer['readinessProbe']) {
  if (!probe) return undefined;
  return { httpGet: { path: probe.httpGet.path, port: probe.httpGet.port ?? containerPort(spec) } };
}

export function resourcesOf(container: AppContainer) {
  const r = container.resources;
  if (!r || (!r.limits && !r.requests)) return undefined;
  const part = (q?: { cpu?: string; memory?: string }) =>
    q && (q.cpu || q.memory) ? omitUndefined({ cpu: q.cpu, memory: q.memory }) : undefined;
  return omitUndefined({ limits: part(r.limits), requests: part(r.requests) });
}

/**
 * JSON with object keys sorted and `<`, `>`, `&`, U+2028, U+2029 escaped: the bytes Go's
 * encoding/json (and so Helm's `toJson`) writes for the same value, so annotations and
 * checksums come out the same from this renderer and from the Helm chart.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value)).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .sort(byKey)
        .map(([k, v]) => [k, sortKeys(v)]),
    );
  return value;
}

const byKey = (a: [string, ...unknown[]], b: [string, ...unknown[]]) =>
  a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;

function omitUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
