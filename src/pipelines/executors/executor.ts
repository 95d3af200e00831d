/**
 * Executors run a step's script somewhere: on this host (local), later in a podman container
 * or a Kubernetes pod. The runner only calls this interface.
 */
export interface ScriptRequest {
  script: string;
  shell: 'bash' | 'sh';
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

export interface Executor {
  readonly name: string;
  runScript(request: ScriptRequest): Promise<ScriptResult>;
  /** After a server crash: stops whatever is still running for a workspace; returns how many were stopped. */
  cleanupAfterCrash(workspace: string): Promise<number>;
}
