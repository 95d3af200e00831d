import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type { CoreV1Api } from '@kubernetes/client-node';
import { containerStepFiles, killStepCommand } from '../container-step.js';
import type { JobSession, JobSpec, ScriptRequest, ScriptResult } from '../executor.js';
import { KILLED_EXIT_CODE, watchForStop } from '../script-stop.js';
import { ignoreNotFound } from './api-error.js';
import { execInPod, type PodTarget } from './pod-exec.js';
import { copyFromPod, copyIntoPod } from './workspace-sync.js';

/** One job's pod. Steps of a session run one at a time. */
export class KubernetesJobSession implements JobSession {
  readonly workspacePath: string;
  private steps = 0;
  private gone: string | undefined;

  constructor(
    private readonly api: CoreV1Api,
    private readonly target: PodTarget,
    readonly job: JobSpec,
    /** Host directory (0700) of this session; `steps/` is mirrored into the pod at the same path. */
    readonly scratch: string,
    private readonly pullSecret: string | undefined,
  ) {
    this.workspacePath = job.workspace;
  }

  get stepsDir(): string {
    return `${this.scratch}/steps`;
  }

  async runScript(request: ScriptRequest): Promise<ScriptResult> {
    if (request.signal.aborted) return { exitCode: KILLED_EXIT_CODE, stopped: 'cancelled' };
    if (this.gone) throw new Error(`the job's pod is gone: ${this.gone}`);
    rmSync(this.stepsDir, { recursive: true, force: true });
    mkdirSync(this.stepsDir, { mode: 0o755 });
    const step = containerStepFiles(request, this.stepsDir, `step-${++this.steps}`);
    for (const file of step.files) writeFileSync(file.path, file.content, { mode: 0o644 });

    let running = false;
    const stop = watchForStop(request, () => {
      if (running) void this.killStep();
    });
    let result: ScriptResult;
    try {
      await copyIntoPod(this.target, [this.job.workspace, this.stepsDir]);
      if (stop.reason) return { exitCode: KILLED_EXIT_CODE, stopped: stop.reason };
      running = true;
      const run = await execInPod(this.target, ['sh', step.wrapper], {
        onStdout: request.onOutput,
        onStderr: request.onOutput,
      }).catch((error: Error) => {
        // Killing the step failed and the pod was deleted, or the pod went away by itself.
        if (stop.reason) return { exitCode: KILLED_EXIT_CODE, message: undefined };
        throw error;
      });
      if (run.message) request.onOutput(Buffer.from(`${run.message}\n`));
      result = { exitCode: run.exitCode, stopped: stop.reason };
    } finally {
      stop.dispose();
      rmSync(this.stepsDir, { recursive: true, force: true });
    }
    if (this.gone) {
      request.onOutput(Buffer.from(`the job directory could not be copied back: ${this.gone}\n`));
      return result;
    }
    await copyFromPod(this.target, this.job.workspace);
    return result;
  }

  /** Kills everything in the job container but its PID 1; deletes the pod if even that fails. */
  private async killStep(): Promise<void> {
    const kill = await execInPod(this.target, killStepCommand).catch((error: Error) => ({
      exitCode: -1,
      message: error.message,
    }));
    if (kill.exitCode === 0 || kill.exitCode === KILLED_EXIT_CODE) return;
    this.gone = `deleted after the step could not be killed (${kill.message ?? kill.exitCode})`;
    await this.deletePod();
  }

  private async deletePod(): Promise<void> {
    const { namespace, pod } = this.target;
    await ignoreNotFound(
      this.api.deleteNamespacedPod({ name: pod, namespace, gracePeriodSeconds: 0 }),
    );
  }

  async close(): Promise<void> {
    this.gone = 'the job was closed';
    try {
      await this.deletePod();
      if (this.pullSecret)
        await ignoreNotFound(
          this.api.deleteNamespacedSecret({
            name: this.pullSecret,
            namespace: this.target.namespace,
          }),
        );
    } finally {
      rmSync(this.scratch, { recursive: true, force: true });
    }
  }
}
