import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { parseContainerOptions } from '../container-options.js';
import { keepAliveCommand } from '../container-step.js';
import type { Executor, JobSession, JobSpec, ServiceSpec } from '../executor.js';
import { PodmanCli } from './cli.js';
import { envFileArgs, healthArgs, optionArgs, publishArgs } from './container-args.js';
import { ensureImage } from './images.js';
import { jobResourceName, labelKeys } from './names.js';
import { waitForService } from './services.js';
import { PodmanJobSession } from './session.js';

export interface PodmanExecutorOptions {
  /** The podman binary (default `podman` on PATH). */
  podman?: string;
  /** The job container's image when a job has `services:` but no `container:`. */
  defaultImage?: string;
}

/** Debian's slim image: has sh, tail and apt; set `defaultImage` on servers that cannot pull it. */
export const DEFAULT_JOB_IMAGE = 'docker.io/library/debian:bookworm-slim';

/**
 * Runs each job in podman containers: a job container (`container:`, or `defaultImage`) with
 * the host's job directory bind-mounted at the same path, and each of `services:` on a network
 * of the job's own where the steps reach it by its name.
 */
export class PodmanExecutor implements Executor {
  readonly name = 'podman';
  readonly capabilities = { container: true, services: true };
  private readonly cli: PodmanCli;

  constructor(private readonly options: PodmanExecutorOptions = {}) {
    this.cli = new PodmanCli(options.podman);
  }

  async prepareJob(job: JobSpec): Promise<JobSession> {
    const scratch = mkdtempSync(join(tmpdir(), 'valve-podman-'));
    // The parent stays 0700 (step files hold the step's environment); steps/ is readable by
    // whatever user the image runs as.
    mkdirSync(join(scratch, 'steps'), { mode: 0o755 });
    const session = new PodmanJobSession(this.cli, job, scratch);
    try {
      await this.start(job, session);
      return session;
    } catch (error) {
      await session.close().catch(() => undefined);
      throw error;
    }
  }

  private async start(job: JobSpec, session: PodmanJobSession): Promise<void> {
    const name = jobResourceName(job);
    const labels = [
      [labelKeys.run, job.runId],
      [labelKeys.job, job.jobKey],
      [labelKeys.workspace, job.workspace],
    ].flatMap(([key, value]) => ['--label', `${key}=${value}`]);
    const services = Object.entries(job.services ?? {});
    const container: ServiceSpec = job.container ?? {
      image: this.options.defaultImage ?? DEFAULT_JOB_IMAGE,
    };
    const jobOptions = parseContainerOptions(container.options, 'container');
    if (jobOptions.health || jobOptions.entrypoint)
      throw new Error('container: options: --health-* and --entrypoint apply to services only');
    const serviceOptions = services.map(([id, spec]) =>
      parseContainerOptions(spec.options, `services.${id}`),
    );

    // A retry of the same job (or a crash before close) may have left these names behind.
    await this.cli.run([
      'rm',
      '--force',
      '--ignore',
      '--time',
      '0',
      `${name}-job`,
      ...services.map(([id]) => `${name}-${id}`),
    ]);
    await this.cli.run(['network', 'rm', '--force', name]);

    for (const spec of [container, ...services.map(([, s]) => s)])
      await ensureImage(this.cli, spec, session.scratch, job.log, job.signal);

    job.signal.throwIfAborted();
    await this.cli.check(['network', 'create', ...labels, name]);
    session.network = name;

    for (const [index, [id, spec]] of services.entries()) {
      const options = serviceOptions[index]!;
      const containerName = `${name}-${id}`;
      job.log(`starting service ${id} (${spec.image})`);
      session.containers.push(containerName);
      await this.cli.check(
        [
          'run',
          '--detach',
          '--name',
          containerName,
          '--network',
          name,
          '--network-alias',
          id,
          ...labels,
          ...envFileArgs(
            { ...options.env, ...spec.env },
            join(session.scratch, `${id}.env`),
            `services.${id}`,
          ),
          ...publishArgs(spec.ports, `services.${id}`),
          ...optionArgs(options),
          ...healthArgs(options.health),
          ...(options.entrypoint ? ['--entrypoint', options.entrypoint] : []),
          '--pull=never',
          spec.image,
        ],
        { signal: job.signal },
      );
      rmSync(join(session.scratch, `${id}.env`), { force: true });
    }

    const jobContainer = `${name}-job`;
    job.log(`starting the job container (${container.image})`);
    session.containers.push(jobContainer);
    const [entrypoint, ...command] = keepAliveCommand;
    await this.cli.check(
      [
        'run',
        '--detach',
        '--name',
        jobContainer,
        '--network',
        name,
        ...labels,
        '--label',
        `${labelKeys.scratch}=${session.scratch}`,
        ...envFileArgs(
          { ...jobOptions.env, ...container.env },
          join(session.scratch, 'job.env'),
          'container',
        ),
        ...publishArgs(container.ports, 'container'),
        ...optionArgs(jobOptions),
        // The same path inside as on the host: paths in env, outputs and logs stay valid.
        '--volume',
        `${job.workspace}:${job.workspace}`,
        '--volume',
        `${session.stepsDir}:${session.stepsDir}:ro`,
        '--workdir',
        job.workspace,
        '--no-healthcheck',
        '--entrypoint',
        entrypoint!,
        '--pull=never',
        container.image,
        ...command,
      ],
      { signal: job.signal },
    );
    rmSync(join(session.scratch, 'job.env'), { force: true });
    session.jobContainer = jobContainer;

    for (const [id] of services)
      await waitForService(this.cli, `${name}-${id}`, id, job.log, job.signal);
  }

  /** Removes the containers and networks of every job of the run (found by their workspace label). */
  async cleanupAfterCrash(runWorkspace: string): Promise<number> {
    const inRun = (labels: Record<string, string> | null | undefined) => {
      const workspace = labels?.[labelKeys.workspace];
      return (
        !!workspace && (workspace === runWorkspace || workspace.startsWith(`${runWorkspace}/`))
      );
    };
    const containers = (
      JSON.parse(
        (await this.cli.check([
          'ps',
          '--all',
          '--filter',
          `label=${labelKeys.workspace}`,
          '--format',
          'json',
        ])) || '[]',
      ) as { Id: string; Labels: Record<string, string> | null }[]
    ).filter((c) => inRun(c.Labels));
    if (containers.length)
      await this.cli.check([
        'rm',
        '--force',
        '--ignore',
        '--time',
        '0',
        ...containers.map((c) => c.Id),
      ]);
    for (const container of containers) {
      const scratch = container.Labels?.[labelKeys.scratch];
      if (scratch && dirname(scratch) === tmpdir() && basename(scratch).startsWith('valve-podman-'))
        rmSync(scratch, { recursive: true, force: true });
    }
    const networks = (
      JSON.parse(
        (await this.cli.check([
          'network',
          'ls',
          '--filter',
          `label=${labelKeys.workspace}`,
          '--format',
          'json',
        ])) || '[]',
      ) as { name: string; labels: Record<string, string> | null }[]
    ).filter((n) => inRun(n.labels));
    for (const network of networks) await this.cli.run(['network', 'rm', '--force', network.name]);
    return containers.length;
  }
}
