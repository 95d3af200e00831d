/**
 * Reading an environment's manifests back from the deploy repo into what a target runs.
 * Files may have been edited by hand, so they are validated like any user-written file.
 */
import { z } from 'zod';
import { FileValidationError, parseYamlStream, validateYaml } from '../formats/yaml.js';
import type { WorkloadSpec } from './targets/target.js';

const probe = z.looseObject({
  httpGet: z.looseObject({
    path: z.string().startsWith('/'),
    port: z.union([z.number(), z.string()]).optional(),
  }),
});
const containerSchema = z.looseObject({
  name: z.string(),
  image: z
    .string()
    .regex(/^[^@\s]+@sha256:[a-f0-9]{64}$/, 'expected an image pinned by digest (name@sha256:...)'),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  env: z.array(z.looseObject({ name: z.string(), value: z.string().optional() })).optional(),
  ports: z.array(z.looseObject({ containerPort: z.number().int().min(1).max(65535) })).optional(),
  readinessProbe: probe.optional(),
});
const deploymentSchema = z.looseObject({
  apiVersion: z.literal('apps/v1'),
  kind: z.literal('Deployment'),
  metadata: z.looseObject({ name: z.string() }),
  spec: z.looseObject({
    replicas: z.number().int().min(0).max(50).optional(),
    template: z.looseObject({
      spec: z.looseObject({
        containers: z.array(containerSchema).length(1, 'expected exactly one container'),
      }),
    }),
  }),
});
const anyManifest = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  metadata: z.looseObject({ name: z.string() }),
});

export interface EnvironmentManifests {
  workloads: Omit<WorkloadSpec, 'key'>[];
  sourceCommit: string | null;
}

/** Parses every manifest file of one environment; throws FileValidationError naming file and line. */
export function readEnvironmentManifests(
  files: { path: string; text: string }[],
): EnvironmentManifests {
  const workloads: EnvironmentManifests['workloads'] = [];
  let sourceCommit: string | null = null;
  for (const file of files) {
    for (const doc of parseYamlStream(file.text, file.path)) {
      const manifest = validateYaml(doc, anyManifest);
      if (manifest.kind !== 'Deployment') continue;
      const deployment = validateYaml(doc, deploymentSchema);
      const container = deployment.spec.template.spec.containers[0]!;
      const at = container.image.indexOf('@');
      const name = container.image.slice(0, at);
      const digest = container.image.slice(at + 1);
      const annotations = (deployment.metadata.annotations ?? {}) as Record<string, string>;
      sourceCommit = annotations['valve.dev/source-commit'] ?? sourceCommit;
      const readiness = container.readinessProbe?.httpGet.path;
      workloads.push({
        image: { reference: container.image, repo: repositoryOf(name), digest },
        command: container.command,
        args: container.args,
        env: Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? ''])),
        port: container.ports?.[0]?.containerPort ?? 8080,
        replicas: deployment.spec.replicas ?? 1,
        readiness: readiness ? { path: readiness } : undefined,
      });
    }
  }
  if (workloads.length > 1) {
    throw new FileValidationError([
      {
        file: files[0]?.path ?? '',
        line: 1,
        column: 1,
        field: 'kind',
        message: 'expected one Deployment per environment',
      },
    ]);
  }
  return { workloads, sourceCommit };
}

/** "127.0.0.1:7080/team/app" -> "team/app": the first component is a registry host when it has a dot or colon or is localhost. */
export function repositoryOf(name: string): string {
  const [first, ...rest] = name.split('/');
  if (rest.length && first && (first.includes('.') || first.includes(':') || first === 'localhost'))
    return rest.join('/');
  return name;
}
