/**
 * Rendering the app spec for one environment into plain Kubernetes manifests (the
 * rendered-manifests pattern): what the deploy repo holds, what Argo CD, Flux or
 * `kubectl apply -f` could apply as they are, and what Valve's own targets read back.
 */
import { stringify } from 'yaml';
import { containerPort, type AppSpec } from './appspec.js';

export interface RenderInput {
  spec: AppSpec;
  app: string;
  team: string;
  environment: string;
  /** Image reference pinned by digest: host/team/app@sha256:... */
  image: string;
  sourceCommit: string;
}

export function renderEnvironment(input: RenderInput): Record<string, string> {
  const { spec, app, environment } = input;
  const envSpec = spec.environments[environment];
  if (!envSpec) throw new Error(`environment ${environment} is not in the app spec`);
  const [containerName, container] = Object.entries(spec.containers)[0]!;
  const port = containerPort(spec);
  const labels = {
    'app.kubernetes.io/name': app,
    'app.kubernetes.io/part-of': input.team,
    'app.kubernetes.io/managed-by': 'valve',
    'valve.dev/environment': environment,
  };
  const variables = { ...container.variables, ...envSpec.variables };
  const probe = (p: typeof container.readinessProbe) =>
    p ? { httpGet: { path: p.httpGet.path, port: p.httpGet.port ?? port } } : undefined;

  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: app,
      labels,
      annotations: { 'valve.dev/source-commit': input.sourceCommit },
    },
    spec: {
      replicas: envSpec.replicas,
      selector: { matchLabels: { 'app.kubernetes.io/name': app } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels },
        spec: {
          containers: [
            omitUndefined({
              name: containerName,
              image: input.image,
              command: container.command,
              args: container.args,
              env: Object.entries(variables).map(([name, value]) => ({ name, value })),
              ports: [{ containerPort: port }],
              readinessProbe: probe(container.readinessProbe),
              livenessProbe: probe(container.livenessProbe),
            }),
          ],
        },
      },
    },
  };
  const servicePorts = Object.entries(
    spec.service?.ports ?? { http: { port: 80, targetPort: port } },
  );
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: app, labels },
    spec: {
      selector: { 'app.kubernetes.io/name': app },
      ports: servicePorts.map(([name, p]) => ({
        name,
        port: p.port,
        targetPort: p.targetPort ?? p.port,
      })),
    },
  };
  return {
    'deployment.yaml': stringify(deployment),
    'service.yaml': stringify(service),
  };
}

function omitUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
