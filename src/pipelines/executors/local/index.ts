import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Executor, JobSession, JobSpec, ScriptRequest, ScriptResult } from '../executor.js';
import { KILLED_EXIT_CODE, watchForStop } from '../script-stop.js';
import { shellCommand } from '../shells.js';
import { killProcessesIn } from './orphans.js';
import { bubblewrapArgs, findBubblewrap, probeBubblewrap } from './sandbox.js';

export interface LocalExecutorOptions {
  /**
   * `auto` (default): steps run in a bubblewrap sandbox when bwrap is installed and passes a probe,
   * as plain host processes otherwise; `bubblewrap`: the sandbox is required (a job fails to
   * start without it); `none`: plain host processes.
   */
  sandbox?: 'auto' | 'bubblewrap' | 'none';
  /** The bwrap binary (default: `bwrap` on the server's PATH). */
  bubblewrap?: string;
}

/**
 * Runs scripts as host processes, sandboxed with bubblewrap when it works. Each script gets its
 * own process group so that a timeout or a cancel kills everything it started, not just the
 * shell; in the sandbox, killing bwrap takes its whole PID namespace with it.
 */
export class LocalExecutor implements Executor {
  readonly name = 'local';
  readonly capabilities = { container: false, services: false };
  private sandboxProbe: Promise<string | null> | undefined;
  private readonly bwrap: string | null;

  constructor(private readonly options: LocalExecutorOptions = {}) {
    this.bwrap = options.bubblewrap ?? findBubblewrap();
  }

  async prepareJob(job: JobSpec): Promise<JobSession> {
    const sandboxed = await this.useSandbox(job);
    return {
      workspacePath: job.workspace,
      runScript: (request) => this.runScript(job, request, sandboxed),
      // Every step's processes are killed when the step ends: nothing is left to stop.
      close: async () => undefined,
    };
  }

  async cleanupAfterCrash(runWorkspace: string): Promise<number> {
    // Sandboxed steps are found too: bwrap and the processes inside it have their cwd in the workspace.
    return killProcessesIn(runWorkspace);
  }

  private async useSandbox(job: JobSpec): Promise<boolean> {
    const mode = this.options.sandbox ?? 'auto';
    if (mode === 'none') {
      job.log('local executor: steps run as plain host processes (sandbox disabled)');
      return false;
    }
    // Probed once per executor: whether bwrap works does not change while the server runs.
    this.sandboxProbe ??= probeBubblewrap(this.bwrap);
    const problem = await this.sandboxProbe;
    if (problem === null) {
      job.log(
        'local executor: steps run in a bubblewrap sandbox (host system read-only, only this job directory writable, private /tmp and PID namespace)',
      );
      return true;
    }
    if (mode === 'bubblewrap') throw new Error(`the bubblewrap sandbox is required but ${problem}`);
    job.log(`local executor: steps run as plain host processes, without a sandbox: ${problem}`);
    return false;
  }

  private async runScript(
    job: JobSpec,
    request: ScriptRequest,
    sandboxed: boolean,
  ): Promise<ScriptResult> {
    if (request.signal.aborted) return { exitCode: KILLED_EXIT_CODE, stopped: 'cancelled' };
    const scratch = mkdtempSync(join(tmpdir(), 'valve-step-'));
    const scriptFile = join(scratch, 'step.sh');
    writeFileSync(scriptFile, request.script);
    const shell = shellCommand(request.shell, scriptFile);
    const [command, ...args] = sandboxed
      ? [
          this.bwrap!,
          ...bubblewrapArgs({
            workspace: job.workspace,
            scriptFile,
            cwd: request.cwd,
            // The server's PATH, not the step's: a step controls its PATH ($GITHUB_PATH) and
            // must not get a directory bound into its sandbox by naming it.
            path: process.env.PATH,
          }),
          '--',
          ...shell,
        ]
      : shell;
    return new Promise((resolve) => {
      const child = spawn(command!, args, {
        cwd: request.cwd,
        env: request.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const killGroup = () => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // No process left in the group.
        }
      };
      const stop = watchForStop(request, killGroup);
      child.stdout.on('data', request.onOutput);
      child.stderr.on('data', request.onOutput);
      let exitCode = 1;
      let finished = false;
      const finish = (code: number) => {
        if (finished) return;
        finished = true;
        stop.dispose();
        rmSync(scratch, { recursive: true, force: true });
        resolve({ exitCode: code, stopped: stop.reason });
      };
      child.on('error', (error) => {
        request.onOutput(Buffer.from(`failed to start ${command}: ${error.message}\n`));
        finish(127);
      });
      child.on('exit', (code, signal) => {
        exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 9) : 0);
        // Kill the rest of the group: a background process must not outlive its step (nor keep
        // its output pipes open, which would keep the step from ending).
        killGroup();
      });
      child.on('close', () => finish(exitCode));
    });
  }
}
