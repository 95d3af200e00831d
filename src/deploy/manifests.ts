/**
 * Reading an environment's manifests back from the deploy repo: every resource (for targets
 * that apply manifests as they are) and the one workload they describe (for targets that run
 * it their own way). Files may have been edited by hand, so they are validated like any
 * user-written file: each problem names the file, line and field.
 */
import { z } from 'zod';
import {
  FileValidationError,
  formatPath,
  parseYamlStream,
  positionOf,
  validateYaml,
  type FileProblem,
  type ParsedYaml,
} from '../formats/yaml.js';
import { syncOptionsSchema, type ResourceRequirements, type SyncOptions } from './appspec.js';
import { ANNOTATIONS } from './render.js';
import { defaultRollout, rolloutSpecSchema, type RolloutSpec } from './rollout-spec.js';
import type { WorkloadSpec } from './targets/target.js';

/** The kinds an environment may hold, with the API version each is written in. */
export const MANIFEST_KINDS = {
  Deployment: 'apps/v1',
  Service: 'v1',
  ConfigMap: 'v1',
  Ingress: 'networking.k8s.io/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
  PodDisruptionBudget: 'policy/v1',
} as const;
export type ManifestKind = keyof typeof MANIFEST_KINDS;

export interface ManifestResource {
  /** Path in the deploy repo, e.g. `envs/dev/deployment.yaml`. */
  file: string;
  /** Line of the document in `file` (1-based). */
  line: number;
  apiVersion: string;
  kind: ManifestKind;
  name: string;
  /** The manifest as written. */
  object: Record<string, unknown>;
}

export interface WorkloadFile {
  /** Absolute path inside the container. */
  path: string;
  content: string;
  /** Decimal file mode (420 = 0644); the target's default when absent. */
  mode?: number;
}

/** What the deploy repo wants to run in one environment, with everything Kubernetes-only left out. */
export interface DesiredWorkload extends WorkloadSpec {
  rollout: RolloutSpec;
  /** Name of the deploy target that runs the environment (`valve.dev/target`, default `local`). */
  target: string;
  sync: SyncOptions;
  /**
   * Variables whose value is a key of a Secret (never committed): variable -> the Secret's
   * name (`<app>-secrets` as rendered) and key (the name of the team or app secret in Valve).
   */
  secretEnv: Record<string, { secret: string; key: string }>;
  /** Files mounted from ConfigMaps of the same environment. */
  files: WorkloadFile[];
  resources?: ResourceRequirements;
  liveness?: { path: string };
  autoscaling?: {
    minReplicas: number;
    maxReplicas: number;
    targetCPUUtilizationPercentage: number;
  };
}

export interface DesiredEnvironment {
  /** Every resource, ordered by file then position. */
  resources: ManifestResource[];
  /** Null when the environment holds no Deployment (never deployed, or emptied). */
  workload: DesiredWorkload | null;
  sourceCommit: string | null;
}

const objectName = z
  .string()
  .regex(
    /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/,
    'expected a lowercase name (letters, digits, - and .)',
  );
const stringMap = z.record(z.string(), z.string({ error: 'expected a string' }));
const metadataSchema = z.looseObject({
  name: objectName,
  labels: stringMap.optional(),
  annotations: stringMap.optional(),
});
const header = z.looseObject({
  apiVersion: z.string({ error: 'expected an apiVersion' }),
  kind: z.string({ error: 'expected a kind' }),
  metadata: metadataSchema,
});

const probe = z.looseObject({
  httpGet: z.looseObject({
    path: z.string().startsWith('/'),
    port: z.union([z.number(), z.string()]).optional(),
  }),
});
const quantity = z.union([z.string(), z.number()]).transform(String);
const computeResources = z.looseObject({
  cpu: quantity.optional(),
  memory: quantity.optional(),
});
const envVar = z
  .strictObject({
    name: z.string().min(1),
    value: z.string({ error: 'expected a string' }).optional(),
    valueFrom: z
      .looseObject({
        secretKeyRef: z.looseObject({ name: objectName, key: z.string().min(1) }).optional(),
      })
      .refine(
        (v) => v.secretKeyRef !== undefined && Object.keys(v).length === 1,
        'expected valueFrom.secretKeyRef: { name, key } (the only source Valve reads)',
      )
      .optional(),
  })
  .refine((e) => !(e.value !== undefined && e.valueFrom), 'expected value or valueFrom, not both');
const containerSchema = z.looseObject({
  name: z.string(),
  image: z
    .string()
    .regex(/^[^@\s]+@sha256:[a-f0-9]{64}$/, 'expected an image pinned by digest (name@sha256:...)'),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  env: z.array(envVar).optional(),
  ports: z.array(z.looseObject({ containerPort: z.number().int().min(1).max(65535) })).optional(),
  resources: z
    .looseObject({ limits: computeResources.optional(), requests: computeResources.optional() })
    .optional(),
  volumeMounts: z
    .array(
      z.looseObject({
        name: z.string(),
        mountPath: z.string().startsWith('/', 'expected an absolute path'),
        subPath: z.string().optional(),
      }),
    )
    .optional(),
  readinessProbe: probe.optional(),
  livenessProbe: probe.optional(),
});
const keyToPath = z.looseObject({
  key: z.string(),
  path: z.string(),
  mode: z.number().int().min(0).max(0o777).optional(),
});
const deploymentSchema = z.looseObject({
  metadata: metadataSchema,
  spec: z.looseObject({
    replicas: z.number().int().min(0).max(50).optional(),
    selector: z.looseObject({ matchLabels: stringMap }),
    template: z.looseObject({
      metadata: z.looseObject({ labels: stringMap }),
      spec: z.looseObject({
        containers: z.array(containerSchema).length(1, 'expected exactly one container'),
        volumes: z
          .array(
            z.looseObject({
              name: z.string(),
              configMap: z
                .looseObject({
                  name: objectName,
                  items: z.array(keyToPath).optional(),
                  defaultMode: z.number().int().min(0).max(0o777).optional(),
                })
                .optional(),
            }),
          )
          .optional(),
      }),
    }),
  }),
});
const kindSchemas: Record<ManifestKind, z.ZodType> = {
  Deployment: deploymentSchema,
  Service: z.looseObject({
    spec: z.looseObject({
      ports: z
        .array(
          z.looseObject({
            name: z.string().optional(),
            port: z.number().int().min(1).max(65535),
            targetPort: z.union([z.number().int().min(1).max(65535), z.string()]).optional(),
            protocol: z.enum(['TCP', 'UDP', 'SCTP']).optional(),
          }),
        )
        .min(1),
    }),
  }),
  ConfigMap: z.looseObject({ data: stringMap.optional(), binaryData: stringMap.optional() }),
  Ingress: z.looseObject({ spec: z.looseObject({}) }),
  HorizontalPodAutoscaler: z.looseObject({
    spec: z.looseObject({
      scaleTargetRef: z.looseObject({ kind: z.literal('Deployment'), name: objectName }),
      minReplicas: z.number().int().min(1).max(50).optional(),
      maxReplicas: z.number().int().min(1).max(50),
      metrics: z.array(z.looseObject({})).optional(),
    }),
  }),
  PodDisruptionBudget: z.looseObject({ spec: z.looseObject({}) }),
};

interface Parsed {
  resource: ManifestResource;
  doc: ParsedYaml;
}

/**
 * Parses every manifest file of one environment into its resources and the workload;
 * throws FileValidationError naming file, line and field.
 */
export function readDesiredEnvironment(
  files: { path: string; text: string }[],
  key: string,
): DesiredEnvironment {
  const parsed: Parsed[] = [];
  const problems: FileProblem[] = [];
  const problem = (doc: ParsedYaml, path: (string | number)[], message: string, field?: string) =>
    problems.push({
      file: doc.file,
      ...positionOf(doc, path),
      field: field ?? formatPath(path),
      message,
    });

  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    for (const doc of parseYamlStream(file.text, file.path)) {
      const head = validateYaml(doc, header);
      const kind = head.kind as ManifestKind;
      if (!(kind in MANIFEST_KINDS)) {
        problem(
          doc,
          ['kind'],
          head.kind === 'Secret'
            ? 'Secrets are not kept in the deploy repo: variables reference them (see docs/app-spec.md)'
            : `expected one of ${Object.keys(MANIFEST_KINDS).join(', ')}`,
        );
        continue;
      }
      if (head.apiVersion !== MANIFEST_KINDS[kind]) {
        problem(doc, ['apiVersion'], `expected ${MANIFEST_KINDS[kind]} for a ${kind}`);
        continue;
      }
      const object = validateYaml(doc, kindSchemas[kind]) as Record<string, unknown>;
      const name = head.metadata.name;
      const twin = parsed.find((p) => p.resource.kind === kind && p.resource.name === name);
      if (twin) {
        problem(
          doc,
          ['metadata', 'name'],
          `a ${kind} named ${name} is already in ${twin.resource.file}:${twin.resource.line}`,
        );
        continue;
      }
      const line = positionOf(doc, []).line;
      parsed.push({
        doc,
        resource: { file: file.path, line, apiVersion: head.apiVersion, kind, name, object },
      });
    }
  }
  if (problems.length) throw new FileValidationError(problems);

  const deployments = parsed.filter((p) => p.resource.kind === 'Deployment');
  if (deployments.length > 1) {
    problem(deployments[1]!.doc, ['kind'], 'expected one Deployment per environment');
    throw new FileValidationError(problems);
  }
  const resources = parsed.map((p) => p.resource);
  const deployment = deployments[0];
  if (!deployment) return { resources, workload: null, sourceCommit: null };
  const result = workloadOf(deployment, parsed, key, problem);
  if (problems.length) throw new FileValidationError(problems);
  return { resources, ...result };
}

type Problem = (
  doc: ParsedYaml,
  path: (string | number)[],
  message: string,
  field?: string,
) => void;

function workloadOf(deployment: Parsed, all: Parsed[], key: string, problem: Problem) {
  const { doc } = deployment;
  const d = deployment.resource.object as z.infer<typeof deploymentSchema>;
  const podSpec = d.spec.template.spec;
  const container = podSpec.containers[0]!;
  const at = (...path: (string | number)[]) => ['spec', 'template', 'spec', ...path];
  const annotations = d.metadata.annotations ?? {};

  for (const [label, value] of Object.entries(d.spec.selector.matchLabels)) {
    if (d.spec.template.metadata.labels[label] !== value)
      problem(
        doc,
        ['spec', 'template', 'metadata', 'labels'],
        `expected ${label}: ${value} (spec.selector.matchLabels selects by it)`,
      );
  }

  const env: Record<string, string> = {};
  const secretEnv: DesiredWorkload['secretEnv'] = {};
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) secretEnv[e.name] = { secret: ref.name, key: ref.key };
    else env[e.name] = e.value ?? '';
  }

  const files: WorkloadFile[] = [];
  (container.volumeMounts ?? []).forEach((mount, i) => {
    const volumeIndex = (podSpec.volumes ?? []).findIndex((v) => v.name === mount.name);
    const volume = podSpec.volumes?.[volumeIndex];
    if (!volume)
      return problem(
        doc,
        at('containers', 0, 'volumeMounts', i, 'name'),
        `expected a volume named ${mount.name} in spec.template.spec.volumes`,
      );
    if (!volume.configMap)
      return problem(
        doc,
        at('volumes', volumeIndex),
        'expected a configMap volume (the only kind Valve reads)',
      );
    const configMap = all.find(
      (p) => p.resource.kind === 'ConfigMap' && p.resource.name === volume.configMap!.name,
    );
    if (!configMap)
      return problem(
        doc,
        at('volumes', volumeIndex, 'configMap', 'name'),
        `expected a ConfigMap ${volume.configMap.name} in this environment`,
      );
    const data = (configMap.resource.object as { data?: Record<string, string> }).data ?? {};
    const items =
      volume.configMap.items ??
      Object.keys(data).map((k) => ({ key: k, path: k, mode: undefined }));
    items.forEach((item, j) => {
      if (!(item.key in data))
        return problem(
          doc,
          at('volumes', volumeIndex, 'configMap', 'items', j, 'key'),
          `expected a key of ConfigMap ${volume.configMap!.name}'s data`,
        );
      if (mount.subPath !== undefined && mount.subPath !== item.path) return;
      const mode = item.mode ?? volume.configMap!.defaultMode;
      files.push({
        path:
          mount.subPath !== undefined
            ? mount.mountPath
            : `${mount.mountPath.replace(/\/$/, '')}/${item.path}`,
        content: data[item.key]!,
        ...(mode === undefined ? {} : { mode }),
      });
    });
  });

  const hpa = all.find((p) => p.resource.kind === 'HorizontalPodAutoscaler');
  let autoscaling: DesiredWorkload['autoscaling'];
  if (hpa) {
    const spec = (
      hpa.resource.object as {
        spec: {
          scaleTargetRef: { name: string };
          minReplicas?: number;
          maxReplicas: number;
          metrics?: unknown[];
        };
      }
    ).spec;
    if (spec.scaleTargetRef.name !== deployment.resource.name)
      problem(
        hpa.doc,
        ['spec', 'scaleTargetRef', 'name'],
        `expected the Deployment's name, ${deployment.resource.name}`,
      );
    autoscaling = {
      minReplicas: spec.minReplicas ?? 1,
      maxReplicas: spec.maxReplicas,
      targetCPUUtilizationPercentage: cpuTarget(spec.metrics) ?? 80,
    };
  }

  const annotationJson = <T>(name: string, schema: z.ZodType<T>, fallback: T): T => {
    const text = annotations[name];
    if (text === undefined) return fallback;
    const path = ['metadata', 'annotations', name];
    const field = `metadata.annotations.${name}`;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      problem(doc, path, `expected JSON (${(error as Error).message})`, field);
      return fallback;
    }
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    for (const issue of result.error.issues)
      problem(
        doc,
        path,
        `${issue.path.length ? `${formatPath(issue.path as (string | number)[])}: ` : ''}${issue.message}`,
        field,
      );
    return fallback;
  };
  const rollout = annotationJson(
    ANNOTATIONS.rollout,
    rolloutSpecSchema,
    structuredClone(defaultRollout),
  );
  const sync = annotationJson(ANNOTATIONS.sync, syncOptionsSchema, {
    automated: true,
    selfHeal: true,
    prune: true,
  });
  const target = annotations[ANNOTATIONS.target] ?? 'local';
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(target))
    problem(
      doc,
      ['metadata', 'annotations', ANNOTATIONS.target],
      'expected a deploy target name',
      `metadata.annotations.${ANNOTATIONS.target}`,
    );

  const at_ = container.image.indexOf('@');
  const readiness = container.readinessProbe?.httpGet.path;
  const liveness = container.livenessProbe?.httpGet.path;
  const resources = container.resources && {
    ...(container.resources.limits && { limits: pick(container.resources.limits) }),
    ...(container.resources.requests && { requests: pick(container.resources.requests) }),
  };
  const workload: DesiredWorkload = {
    key,
    image: {
      reference: container.image,
      repo: repositoryOf(container.image.slice(0, at_)),
      digest: container.image.slice(at_ + 1),
    },
    command: container.command,
    args: container.args,
    env,
    port: container.ports?.[0]?.containerPort ?? 8080,
    replicas: d.spec.replicas ?? autoscaling?.minReplicas ?? 1,
    readiness: readiness ? { path: readiness } : undefined,
    rollout,
    target,
    sync,
    secretEnv,
    files,
    ...(resources && { resources }),
    ...(liveness && { liveness: { path: liveness } }),
    ...(autoscaling && { autoscaling }),
  };
  return { workload, sourceCommit: annotations[ANNOTATIONS.sourceCommit] ?? null };
}

function pick(q: { cpu?: string; memory?: string }) {
  return { ...(q.cpu && { cpu: q.cpu }), ...(q.memory && { memory: q.memory }) };
}

/** The CPU utilization target of an autoscaling/v2 metrics list, if it has one. */
function cpuTarget(metrics: unknown[] | undefined): number | undefined {
  for (const m of metrics ?? []) {
    const r = (m as { resource?: { name?: string; target?: { averageUtilization?: unknown } } })
      .resource;
    if (r?.name === 'cpu' && typeof r.target?.averageUtilization === 'number')
      return r.target.averageUtilization;
  }
  return undefined;
}

export interface EnvironmentManifests {
  workloads: Omit<WorkloadSpec, 'key'>[];
  sourceCommit: string | null;
}

/**
 * The workload in the shape targets took before rollouts, files and secrets (kept for
 * callers of that shape); throws FileValidationError naming file and line.
 */
export function readEnvironmentManifests(
  files: { path: string; text: string }[],
): EnvironmentManifests {
  const { workload, sourceCommit } = readDesiredEnvironment(files, '');
  if (!workload) return { workloads: [], sourceCommit };
  const { image, command, args, env, port, replicas, readiness } = workload;
  return { workloads: [{ image, command, args, env, port, replicas, readiness }], sourceCommit };
}

/** "127.0.0.1:7080/team/app" -> "team/app": the first component is a registry host when it has a dot or colon or is localhost. */
export function repositoryOf(name: string): string {
  const [first, ...rest] = name.split('/');
  if (rest.length && first && (first.includes('.') || first.includes(':') || first === 'localhost'))
    return rest.join('/');
  return name;
}
