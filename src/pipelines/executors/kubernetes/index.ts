import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, Exec, KubeConfig } from '@kubernetes/client-node';
import type { Executor, JobSession, JobSpec } from '../executor.js';
import { annotations, labels } from './names.js';
import { JOB_CONTAINER, jobPodSpec } from './pod-spec.js';
import { waitForPodReady } from './readiness.js';
import { apiErrorMessage, ignoreNotFound } from './api-error.js';
import { KubernetesJobSession } from './session.js';

export interface KubernetesExecutorOptions {
  /** A kubeconfig file's path, or a kubeconfig itself (YAML or JSON: any text with a line break). */
  kubeconfig: string;
  /** Namespace of the job pods (default: the kubeconfig context's, else `default`). */
  namespace?: string;
  /** The job container's image when a job has `services:` but no `container:`. */
  defaultImage?: string;
  /** How long a pod may take to be ready, images pulled and services' readiness probes passing (default 10 min). */
  readyTimeoutMs?: number;
}

export const DEFAULT_JOB_IMAGE = 'docker.io/library/debian:bookworm-slim';

/**
 * Runs each job in a pod, through the official client: the job container and its services as
 * containers of one pod, steps through the exec API, the job directory copied in and out
 * around each `run` step (see workspace-sync.ts).
 */
export class KubernetesExecutor implements Executor {
  readonly name = 'kubernetes';
  readonly capabilities = { container: true, services: true };
  private readonly config = new KubeConfig();
  private readonly api: CoreV1Api;
  private readonly exec: Exec;
  readonly namespace: string;

  constructor(private readonly options: KubernetesExecutorOptions) {
    if (/[\n{]/.test(options.kubeconfig)) this.config.loadFromString(options.kubeconfig);
    else this.config.loadFromFile(options.kubeconfig);
    this.api = this.config.makeApiClient(CoreV1Api);
    this.exec = new Exec(this.config);
    const context = this.config.getContextObject(this.config.getCurrentContext());
    this.namespace = options.namespace ?? context?.namespace ?? 'default';
  }

  async prepareJob(job: JobSpec): Promise<JobSession> {
    const scratch = mkdtempSync(join(tmpdir(), 'valve-k8s-'));
    const stepsDir = join(scratch, 'steps');
    mkdirSync(stepsDir, { mode: 0o755 });
    const image = job.container ?? { image: this.options.defaultImage ?? DEFAULT_JOB_IMAGE };
    let spec: ReturnType<typeof jobPodSpec>;
    try {
      spec = jobPodSpec(job, image, stepsDir);
    } catch (error) {
      rmSync(scratch, { recursive: true, force: true });
      throw error;
    }
    const name = spec.pod.metadata!.name!;
    const target = {
      exec: this.exec,
      namespace: this.namespace,
      pod: name,
      container: JOB_CONTAINER,
    };
    const session = new KubernetesJobSession(
      this.api,
      target,
      job,
      scratch,
      spec.pullSecret?.metadata?.name,
    );
    try {
      // A retry of the same job (or a crash before close) may have left the pod behind.
      await ignoreNotFound(
        this.api.deleteNamespacedPod({ name, namespace: this.namespace, gracePeriodSeconds: 0 }),
      );
      if (spec.pullSecret) {
        await ignoreNotFound(
          this.api.deleteNamespacedSecret({
            name: spec.pullSecret.metadata!.name!,
            namespace: this.namespace,
          }),
        );
        await this.api.createNamespacedSecret({ namespace: this.namespace, body: spec.pullSecret });
      }
      job.log(`creating pod ${name} in namespace ${this.namespace} (${image.image})`);
      await this.api.createNamespacedPod({ namespace: this.namespace, body: spec.pod });
      await waitForPodReady(this.config, this.namespace, name, {
        timeoutMs: this.options.readyTimeoutMs ?? 600_000,
        signal: job.signal,
        log: job.log,
      });
      job.log(`pod ${name} is ready`);
      return session;
    } catch (error) {
      await session.close().catch(() => undefined);
      throw new Error(apiErrorMessage(error), { cause: error });
    }
  }

  /** Deletes the pods (and pull secrets) of every job of the run, found by label, matched by workspace. */
  async cleanupAfterCrash(runWorkspace: string): Promise<number> {
    try {
      return await this.deleteRunObjects(runWorkspace);
    } catch (error) {
      throw new Error(apiErrorMessage(error), { cause: error });
    }
  }

  private async deleteRunObjects(runWorkspace: string): Promise<number> {
    const inRun = (object: { metadata?: { annotations?: Record<string, string> } }) => {
      const workspace = object.metadata?.annotations?.[annotations.workspace];
      return (
        !!workspace && (workspace === runWorkspace || workspace.startsWith(`${runWorkspace}/`))
      );
    };
    const namespace = this.namespace;
    const pods = (
      await this.api.listNamespacedPod({ namespace, labelSelector: labels.run })
    ).items.filter(inRun);
    for (const pod of pods)
      await ignoreNotFound(
        this.api.deleteNamespacedPod({
          name: pod.metadata!.name!,
          namespace,
          gracePeriodSeconds: 0,
        }),
      );
    const secrets = (
      await this.api.listNamespacedSecret({ namespace, labelSelector: labels.run })
    ).items.filter(inRun);
    for (const secret of secrets)
      await ignoreNotFound(
        this.api.deleteNamespacedSecret({ name: secret.metadata!.name!, namespace }),
      );
    return pods.length;
  }
}
