import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { containerStepFiles, killStepCommand } from '../container-step.js';
import type { JobSession, JobSpec, ScriptRequest, ScriptResult } from '../executor.js';
import { KILLED_EXIT_CODE, watchForStop } from '../script-stop.js';
import { lastLines, type PodmanCli } from './cli.js';

/**
 * One job's containers: the job container (steps run in it with `podman exec`), its services
 * and their network. Steps of a session run one at a time.
 */
export class PodmanJobSession implements JobSession {
  readonly workspacePath: string;
  /** Containers to remove on close, services first. */
  readonly containers: string[] = [];
  network: string | undefined;
  jobContainer: string | undefined;
  private steps = 0;
  private broken: string | undefined;

  constructor(
    private readonly cli: PodmanCli,
    readonly job: JobSpec,
    /** Host directory (0700) holding `steps/`, bound read-only into the job container. */
    readonly scratch: string,
  ) {
    this.workspacePath = job.workspace;
  }

  get stepsDir(): string {
    return `${this.scratch}/steps`;
  }

  async runScript(request: ScriptRequest): Promise<ScriptResult> {
    if (request.signal.aborted) return { exitCode: KILLED_EXIT_CODE, stopped: 'cancelled' };
    if (this.broken || !this.jobContainer)
      throw new Error(`the job container is gone: ${this.broken ?? 'the job was closed'}`);
    const container = this.jobContainer;
    const step = containerStepFiles(request, this.stepsDir, `step-${++this.steps}`);
    for (const file of step.files) writeFileSync(file.path, file.content, { mode: 0o644 });
    try {
      return await new Promise<ScriptResult>((resolve) => {
        const child = spawn(this.cli.binary, ['exec', container, 'sh', step.wrapper], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        const stop = watchForStop(request, () => void this.killStep(container, child.pid));
        child.stdout.on('data', request.onOutput);
        child.stderr.on('data', request.onOutput);
        child.on('error', (error) => {
          stop.dispose();
          request.onOutput(Buffer.from(`failed to start podman: ${error.message}\n`));
          resolve({ exitCode: 127 });
        });
        child.on('close', (code, signal) => {
          stop.dispose();
          resolve({ exitCode: code ?? (signal ? KILLED_EXIT_CODE : 1), stopped: stop.reason });
        });
      });
    } finally {
      for (const file of step.files) rmSync(file.path, { force: true });
    }
  }

  /**
   * Stopping `podman exec` itself would leave the step running in the container: the kill has
   * to happen inside. If even that fails, the container is killed (the job cannot go on) and
   * the exec client with it.
   */
  private async killStep(container: string, execPid: number | undefined): Promise<void> {
    const kill = await this.cli.run(['exec', container, ...killStepCommand]);
    if (kill.code === 0 || kill.code === 137) return;
    this.broken = `killed after a failed step kill: ${lastLines(kill.stderr)}`;
    await this.cli.run(['kill', container]);
    if (execPid) {
      try {
        process.kill(execPid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }

  async close(): Promise<void> {
    this.jobContainer = undefined;
    try {
      if (this.containers.length) {
        const removed = await this.cli.run([
          'rm',
          '--force',
          '--ignore',
          '--time',
          '0',
          ...this.containers,
        ]);
        if (removed.code !== 0) throw new Error(`podman rm failed: ${lastLines(removed.stderr)}`);
        this.containers.length = 0;
      }
      if (this.network) {
        const removed = await this.cli.run(['network', 'rm', '--force', this.network]);
        if (removed.code !== 0 && !/not found|no such/i.test(removed.stderr))
          throw new Error(`podman network rm failed: ${lastLines(removed.stderr)}`);
        this.network = undefined;
      }
    } finally {
      rmSync(this.scratch, { recursive: true, force: true });
    }
  }
}
