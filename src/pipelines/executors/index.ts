/**
 * The executors this server offers, by the `runs-on` label that selects them: `local` always,
 * `podman` when the podman CLI works here, `kubernetes` when a kubeconfig is configured. The
 * Kubernetes client is imported only when a Kubernetes job (or crash cleanup) first needs it.
 */
import type { Executor, JobSession, JobSpec } from './executor.js';
import { kubernetesClientProblem } from './kubernetes/client-probe.js';
import { LocalExecutor, type LocalExecutorOptions } from './local/index.js';
import { PodmanCli } from './podman/cli.js';
import { PodmanExecutor, type PodmanExecutorOptions } from './podman/index.js';

export type {
  Executor,
  JobSession,
  JobSpec,
  ScriptRequest,
  ScriptResult,
  ServiceSpec,
} from './executor.js';
export { LocalExecutor } from './local/index.js';
export { PodmanExecutor } from './podman/index.js';

/** The part of a pino logger this uses. */
export interface ExecutorLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface ExecutorsOptions {
  /** A kubeconfig file's path or contents: enables the `kubernetes` executor. */
  kubeconfig?: string;
  /** Namespace of the job pods (default: the kubeconfig context's, else `default`). */
  kubernetesNamespace?: string;
  /** The job container's image (podman, kubernetes) when a job has `services:` but no `container:`. */
  defaultImage?: string;
  local?: LocalExecutorOptions;
  podman?: PodmanExecutorOptions;
  log?: ExecutorLog;
}

export function createExecutors(options: ExecutorsOptions = {}): Map<string, Executor> {
  const executors = new Map<string, Executor>();
  executors.set('local', new LocalExecutor(options.local));
  const problem = new PodmanCli(options.podman?.podman).worksSync();
  if (problem === null)
    executors.set(
      'podman',
      new PodmanExecutor({ defaultImage: options.defaultImage, ...options.podman }),
    );
  else options.log?.info({ reason: problem }, 'podman executor not available');
  if (options.kubeconfig) {
    executors.set(
      'kubernetes',
      new LazyKubernetesExecutor(
        options.kubeconfig,
        options.kubernetesNamespace,
        options.defaultImage,
      ),
    );
  }
  options.log?.info({ executors: [...executors.keys()] }, 'pipeline executors');
  return executors;
}

/** Loads the Kubernetes client (a large module tree) on first use. */
class LazyKubernetesExecutor implements Executor {
  readonly name = 'kubernetes';
  readonly capabilities = { container: true, services: true };
  private loaded: Promise<Executor> | undefined;

  constructor(
    private readonly kubeconfig: string,
    private readonly namespace: string | undefined,
    private readonly defaultImage: string | undefined,
  ) {}

  private executor(): Promise<Executor> {
    this.loaded ??= (async () => {
      const problem = await kubernetesClientProblem();
      if (problem) throw new Error(problem);
      const { KubernetesExecutor } = await import('./kubernetes/index.js');
      return new KubernetesExecutor({
        kubeconfig: this.kubeconfig,
        namespace: this.namespace,
        defaultImage: this.defaultImage,
      });
    })();
    return this.loaded;
  }

  async prepareJob(job: JobSpec): Promise<JobSession> {
    return (await this.executor()).prepareJob(job);
  }

  async cleanupAfterCrash(runWorkspace: string): Promise<number> {
    return (await this.executor()).cleanupAfterCrash(runWorkspace);
  }
}
