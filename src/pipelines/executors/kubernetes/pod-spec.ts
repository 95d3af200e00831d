import type { V1Container, V1Pod, V1Secret } from '@kubernetes/client-node';
import {
  durationSeconds,
  parseContainerOptions,
  type ContainerOptions,
} from '../container-options.js';
import { keepAliveCommand } from '../container-step.js';
import type { JobSpec, ServiceSpec } from '../executor.js';
import { registryOf } from '../image-reference.js';
import { annotations, containerName, labels, labelValue, podName } from './names.js';

export const JOB_CONTAINER = 'job';

export interface JobPodSpec {
  pod: V1Pod;
  /** The registry login secret, when an image has `credentials`. */
  pullSecret?: V1Secret;
}

/**
 * The pod of one job: the job container (kept alive, steps are exec'd into it) and one
 * container per service. Services share the pod's network namespace: steps reach them on
 * localhost, and by their name through `hostAliases` (so `redis:6379` works as with podman);
 * two services cannot listen on the same port. The job directory is an emptyDir mounted at the
 * host's path, so paths in env and outputs mean the same inside and out; `stepsDir` holds the
 * step scripts.
 */
export function jobPodSpec(job: JobSpec, image: ServiceSpec, stepsDir: string): JobPodSpec {
  const name = podName(job);
  const metadata = {
    name,
    labels: {
      [labels.run]: labelValue(job.runId),
      [labels.job]: labelValue(job.jobKey),
      [labels.managedBy]: 'valve',
    },
    annotations: { [annotations.workspace]: job.workspace, [annotations.jobKey]: job.jobKey },
  };
  const jobOptions = parseContainerOptions(image.options, 'container');
  if (jobOptions.health || jobOptions.entrypoint)
    throw new Error('container: options: --health-* and --entrypoint apply to services only');
  const services = Object.entries(job.services ?? {});
  const jobContainer: V1Container = {
    name: JOB_CONTAINER,
    image: image.image,
    command: keepAliveCommand,
    workingDir: job.workspace,
    env: envList({ ...jobOptions.env, ...image.env }),
    ports: containerPorts(image.ports, 'container'),
    volumeMounts: [
      { name: 'job', mountPath: job.workspace },
      { name: 'steps', mountPath: stepsDir },
      ...tmpfsMounts(jobOptions, 'job'),
    ],
    ...containerOptions(jobOptions, 'container'),
  };
  const serviceContainers: V1Container[] = services.map(([id, spec]) => {
    const where = `services.${id}`;
    const options = parseContainerOptions(spec.options, where);
    return {
      name: `svc-${containerName(id)}`.slice(0, 63),
      image: spec.image,
      env: envList({ ...options.env, ...spec.env }),
      ports: containerPorts(spec.ports, where),
      ...(options.entrypoint ? { command: [options.entrypoint] } : {}),
      ...(options.health ? { readinessProbe: readinessProbe(options.health) } : {}),
      volumeMounts: tmpfsMounts(options, `svc-${containerName(id)}`),
      ...containerOptions(options, where),
    };
  });
  const credentials = [image, ...services.map(([, s]) => s)].filter((s) => s.credentials);
  const pullSecret: V1Secret | undefined = credentials.length
    ? {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { ...metadata, name: `${name}-pull`.slice(0, 253) },
        type: 'kubernetes.io/dockerconfigjson',
        data: {
          '.dockerconfigjson': Buffer.from(
            JSON.stringify({
              auths: Object.fromEntries(
                credentials.map((s) => {
                  const { username, password } = s.credentials!;
                  const auth = Buffer.from(`${username}:${password}`).toString('base64');
                  return [registryKey(s.image), { username, password, auth }];
                }),
              ),
            }),
          ).toString('base64'),
        },
      }
    : undefined;
  const volumes = [
    { name: 'job', emptyDir: {} },
    { name: 'steps', emptyDir: {} },
    ...[jobContainer, ...serviceContainers].flatMap((c) =>
      (c.volumeMounts ?? [])
        .filter((m) => m.name.includes('-tmpfs-'))
        .map((m) => ({ name: m.name, emptyDir: { medium: 'Memory' } })),
    ),
  ];
  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata,
    spec: {
      restartPolicy: 'Never',
      // Steps get no Kubernetes API credentials, and no environment about other services.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 0,
      hostAliases: services.length
        ? [{ ip: '127.0.0.1', hostnames: services.map(([id]) => id) }]
        : undefined,
      imagePullSecrets: pullSecret ? [{ name: pullSecret.metadata!.name! }] : undefined,
      containers: [jobContainer, ...serviceContainers],
      volumes,
    },
  };
  return { pod, pullSecret };
}

function envList(env: Record<string, string>) {
  return Object.entries(env).map(([name, value]) => ({ name, value }));
}

/** Only the container side of `ports:` matters in a pod: nothing is published on a host. */
function containerPorts(ports: string[] | undefined, where: string) {
  return (ports ?? []).map((port) => {
    const match = /^(?:.*:)?(\d+)(?:\/(tcp|udp))?$/.exec(String(port).trim());
    if (!match) throw new Error(`${where}: ports: ${port} is not host:container or container`);
    return { containerPort: Number(match[1]), protocol: (match[2] ?? 'tcp').toUpperCase() };
  });
}

function readinessProbe(health: NonNullable<ContainerOptions['health']>) {
  return {
    exec: { command: ['sh', '-c', health.cmd] },
    periodSeconds: health.interval ? durationSeconds(health.interval) : 10,
    timeoutSeconds: health.timeout ? durationSeconds(health.timeout) : 1,
    failureThreshold: health.retries ?? 3,
    initialDelaySeconds: health.startPeriod ? durationSeconds(health.startPeriod) : 0,
  };
}

function tmpfsMounts(options: ContainerOptions, prefix: string) {
  return options.tmpfs.map((path, index) => ({
    name: `${prefix}-tmpfs-${index}`,
    mountPath: path.split(':')[0]!,
  }));
}

/** `--user`, `--cpus`, `--memory`; flags a pod has no equivalent for are refused. */
function containerOptions(options: ContainerOptions, where: string): Partial<V1Container> {
  if (options.hostname || options.shmSize)
    throw new Error(`${where}: options: --hostname and --shm-size are not supported on Kubernetes`);
  const result: Partial<V1Container> = {};
  if (options.user) {
    const match = /^(\d+)(?::(\d+))?$/.exec(options.user);
    if (!match)
      throw new Error(`${where}: options: --user must be numeric (uid[:gid]) on Kubernetes`);
    result.securityContext = {
      runAsUser: Number(match[1]),
      ...(match[2] ? { runAsGroup: Number(match[2]) } : {}),
    };
  }
  const limits: Record<string, string> = {};
  if (options.cpus) limits.cpu = options.cpus;
  if (options.memory)
    limits.memory = options.memory.replace(
      /^(\d+)([kmg])b?$/i,
      (_, n: string, u: string) => `${n}${u.toUpperCase()}i`,
    );
  if (Object.keys(limits).length) result.resources = { limits };
  return result;
}

function registryKey(image: string): string {
  const registry = registryOf(image);
  return registry === 'docker.io' ? 'https://index.docker.io/v1/' : registry;
}
