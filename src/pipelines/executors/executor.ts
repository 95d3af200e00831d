/**
 * Executors run a job's scripts somewhere: on this host (local), in podman containers, or in a
 * Kubernetes pod. The runner prepares one session per job and runs each `run` step through it;
 * built-in steps run in the server on the job's host workspace, which every executor shares
 * with what it runs (a bind mount for containers).
 */
export interface ServiceSpec {
  image: string;
  env?: Record<string, string>;
  /** `host:container` or `container` port mappings, as in GitHub Actions. */
  ports?: string[];
  /** Extra options as GitHub Actions passes them to `docker create` (a documented subset). */
  options?: string;
  /** Registry login for pulling `image`, as GitHub Actions' `credentials:`. */
  credentials?: { username: string; password: string };
}

export interface JobSpec {
  runId: string;
  /** Unique within the run: the job id plus its matrix values, e.g. `test-node-20`. */
  jobKey: string;
  /** Host directory of the job's workspace (fresh, empty). */
  workspace: string;
  /** `container:` of the job: run the steps inside this image. */
  container?: ServiceSpec;
  /** `services:` of the job: sibling containers reachable by their name from the steps. */
  services?: Record<string, ServiceSpec>;
  /** Called with progress lines worth showing in the run's log (pulling images, starting services). */
  log(line: string): void;
  signal: AbortSignal;
}

export interface ScriptRequest {
  script: string;
  /** `default`: no shell given in the workflow (bash, or sh where there is no bash). */
  shell: 'bash' | 'sh' | 'default';
  /** A host path inside the job's workspace; the executor maps it to where its processes see it. */
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
  signal: AbortSignal;
  onOutput(chunk: Buffer): void;
}

export interface ScriptResult {
  exitCode: number;
  /** Why the script was stopped, when it was. */
  stopped?: 'timeout' | 'cancelled';
}

export interface JobSession {
  /** Where the steps see the workspace (the host path for local jobs, a mount point in containers). */
  readonly workspacePath: string;
  runScript(request: ScriptRequest): Promise<ScriptResult>;
  /** Stops and removes everything the job started (containers, services, processes). */
  close(): Promise<void>;
}

export interface Executor {
  /** The `runs-on` label that selects it: `local`, `podman`, `kubernetes`. */
  readonly name: string;
  /** What this executor can do, so the runner rejects a job it cannot run before it starts. */
  readonly capabilities: { container: boolean; services: boolean };
  prepareJob(job: JobSpec): Promise<JobSession>;
  /** After a server crash: stops whatever is still running for a run's workspace; returns how many were stopped. */
  cleanupAfterCrash(runWorkspace: string): Promise<number>;
}
