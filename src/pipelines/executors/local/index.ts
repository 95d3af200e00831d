import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Executor, ScriptRequest, ScriptResult } from '../executor.js';
import { killProcessesIn } from './orphans.js';

const shells = {
  // The same flags GitHub Actions uses for `shell: bash`.
  bash: ['bash', '--noprofile', '--norc', '-eo', 'pipefail'],
  sh: ['sh', '-e'],
} as const;

/**
 * Runs scripts as host processes. Each script gets its own process group so that a timeout or
 * a cancel kills everything it started, not just the shell.
 */
export class LocalExecutor implements Executor {
  readonly name = 'local';

  async cleanupAfterCrash(workspace: string): Promise<number> {
    return killProcessesIn(workspace);
  }

  runScript(request: ScriptRequest): Promise<ScriptResult> {
    const scratch = mkdtempSync(join(tmpdir(), 'valve-step-'));
    const scriptFile = join(scratch, 'step.sh');
    writeFileSync(scriptFile, request.script);
    const [command, ...args] = shells[request.shell];
    return new Promise((resolve) => {
      const child = spawn(command, [...args, scriptFile], {
        cwd: request.cwd,
        env: request.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stopped: ScriptResult['stopped'];
      const killTree = (reason: NonNullable<ScriptResult['stopped']>) => {
        stopped ??= reason;
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // Already gone.
        }
      };
      const timer = setTimeout(() => killTree('timeout'), request.timeoutMs);
      const onAbort = () => killTree('cancelled');
      request.signal.addEventListener('abort', onAbort, { once: true });
      child.stdout.on('data', request.onOutput);
      child.stderr.on('data', request.onOutput);
      const finish = (exitCode: number) => {
        clearTimeout(timer);
        request.signal.removeEventListener('abort', onAbort);
        rmSync(scratch, { recursive: true, force: true });
        resolve({ exitCode, stopped });
      };
      child.on('error', (error) => {
        request.onOutput(Buffer.from(`failed to start ${command}: ${error.message}\n`));
        finish(127);
      });
      child.on('close', (code, signal) => {
        // Kill the rest of the group: a background process must not outlive its step.
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // No process left in the group.
        }
        finish(code ?? (signal ? 128 + 9 : 1));
      });
    });
  }
}
