import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { WorkloadSpec } from '../target.js';
import type { PodmanCli } from './cli.js';

/**
 * The containers of this target as podman sees them: their names and labels, the
 * `podman run` arguments of one instance, and one listing of all of them (`podman ps`).
 */

export const labelKeys = {
  /** Which target owns the container: a hash of its data directory (see `ownerOf`). */
  owner: 'valve.dev/target',
  workload: 'valve.dev/workload',
  instance: 'valve.dev/instance',
  /** Manifest digest of the image, as the spec pinned it. */
  image: 'valve.dev/image',
  /**
   * On a container created only to read its image's files (file-drift.ts), never started:
   * the owner's hash. Apart from `owner`, so the container watch never takes it for a stray.
   */
  scratch: 'valve.dev/scratch',
} as const;

/** `valve-<dirName>-<instance id>`: readable in `podman ps`, unique per instance. */
export function containerName(dirName: string, instanceId: string): string {
  return `valve-${dirName}-${instanceId}`;
}

/** What `podman run` needs to create one instance's container, apart from its own port and name. */
export interface ContainerPlan {
  /** The image as podman's storage names it (see images.ts). */
  image: string;
  /** Replaces the image Entrypoint; then the image Cmd is dropped unless `args` is given. */
  command?: string[];
  args?: string[];
  env: Record<string, string>;
  /** The port the app listens on inside the container. */
  containerPort: number;
  labels: Record<string, string>;
}

/** What `podman run` gets for one instance: the spec's command, env and `PORT`, and the labels recover() finds. */
export function containerPlan(options: {
  /** Value of the `valve.dev/target` label. */
  owner: string;
  key: string;
  spec: WorkloadSpec;
  /** The image as podman's storage names it. */
  image: string;
  instance: string;
}): ContainerPlan {
  const { owner, key, spec, image, instance } = options;
  return {
    image,
    command: spec.command,
    args: spec.args,
    // PORT as the local target sets it, so an app written for one runs on the other.
    env: { ...spec.env, PORT: String(spec.port) },
    containerPort: spec.port,
    labels: {
      [labelKeys.owner]: owner,
      [labelKeys.workload]: key,
      [labelKeys.instance]: instance,
      [labelKeys.image]: spec.image.digest,
    },
  };
}

/**
 * Creates and starts the container; returns its id. Environment values go through an env file
 * (0600, removed right after) rather than the command line, which `ps` shows to everyone; a
 * value with a line break, which env files cannot hold, goes on the command line.
 */
export async function runContainer(
  cli: PodmanCli,
  options: {
    name: string;
    plan: ContainerPlan;
    hostPort: number;
    scratchDir: string;
  },
): Promise<string> {
  const { name, plan, hostPort, scratchDir } = options;
  await mkdir(scratchDir, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(scratchDir, 'run-'));
  try {
    const fileLines: string[] = [];
    const inline: string[] = [];
    for (const [key, value] of Object.entries(plan.env)) {
      if (/[\r\n]/.test(value)) inline.push('--env', `${key}=${value}`);
      else fileLines.push(`${key}=${value}`);
    }
    const envFile = join(dir, 'env');
    await writeFile(envFile, fileLines.join('\n') + '\n', { mode: 0o600 });
    const args = [
      'run',
      '--detach',
      '--name',
      name,
      ...Object.entries(plan.labels).flatMap(([key, value]) => ['--label', `${key}=${value}`]),
      '--publish',
      `127.0.0.1:${hostPort}:${plan.containerPort}`,
      '--env-file',
      envFile,
      ...inline,
      '--pull=never',
      ...(plan.command ? ['--entrypoint', JSON.stringify(plan.command)] : []),
      plan.image,
      ...(plan.args ?? []),
    ];
    return (await cli.check(args)).trim().split('\n').at(-1) ?? '';
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One container of this target in a listing. */
export interface ObservedContainer {
  id: string;
  name: string;
  /** podman's state: `running`, `exited`, `created`, `paused`, `stopping`, ... */
  state: string;
  exitCode: number;
  /** Host pid of the container's main process; 0 when it does not run. */
  pid: number;
  labels: Record<string, string>;
}

const listedSchema = z.array(
  z.object({
    Id: z.string(),
    Names: z.array(z.string()).nullish(),
    State: z.string(),
    ExitCode: z.number().nullish(),
    Pid: z.number().nullish(),
    Labels: z.record(z.string(), z.string()).nullish(),
  }),
);

/** Every container (running or not) carrying `label=value`. */
export async function listContainers(
  cli: PodmanCli,
  label: string,
  value: string,
): Promise<ObservedContainer[]> {
  const output = await cli.check(
    ['ps', '--all', '--filter', `label=${label}=${value}`, '--format', 'json'],
    { timeoutMs: 30_000 },
  );
  return listedSchema.parse(JSON.parse(output.trim() || '[]')).map((container) => ({
    id: container.Id,
    name: container.Names?.[0] ?? container.Id.slice(0, 12),
    state: container.State,
    exitCode: container.ExitCode ?? 0,
    pid: container.State === 'running' ? (container.Pid ?? 0) : 0,
    labels: container.Labels ?? {},
  }));
}

/** Stops (SIGTERM, SIGKILL after `graceMs`) and removes containers; gone ones are fine. */
export async function removeContainers(
  cli: PodmanCli,
  refs: string[],
  graceMs: number,
): Promise<void> {
  if (refs.length === 0) return;
  await cli.check(
    ['rm', '--force', '--ignore', '--time', String(Math.ceil(graceMs / 1000)), ...refs],
    { timeoutMs: graceMs + 60_000 },
  );
}

export function describeContainerExit(container: ObservedContainer): string {
  if (container.state === 'exited' || container.state === 'stopped')
    return `exited with code ${container.exitCode}`;
  return `is ${container.state}`;
}
