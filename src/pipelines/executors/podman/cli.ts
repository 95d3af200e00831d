/**
 * The `podman` command line. Valve drives podman through its CLI rather than a library: the CLI
 * is podman's stable, documented interface (its REST socket needs a service running, and no npm
 * library covers exec streaming, networks and health checks better than the CLI does).
 */
import { spawn, spawnSync } from 'node:child_process';

export interface PodmanResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class PodmanCli {
  constructor(readonly binary = 'podman') {}

  /** Runs podman to completion. */
  run(args: string[], options: { signal?: AbortSignal } = {}): Promise<PodmanResult> {
    return new Promise((resolve) => {
      const child = spawn(this.binary, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        signal: options.signal,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', (error) => resolve({ code: 127, stdout, stderr: stderr + error.message }));
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  }

  /** Runs podman and returns its stdout; throws with its stderr when it fails. */
  async check(args: string[], options: { signal?: AbortSignal } = {}): Promise<string> {
    const result = await this.run(args, options);
    if (result.code !== 0) throw new Error(`podman ${args[0]} failed: ${lastLines(result.stderr)}`);
    return result.stdout;
  }

  /** Whether podman is installed and can reach its storage and runtime (checked synchronously, once at start). */
  worksSync(): string | null {
    const result = spawnSync(this.binary, ['info', '--format', '{{.Host.OCIRuntime.Name}}'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (result.error) return result.error.message;
    if (result.status !== 0) return lastLines(result.stderr ?? '');
    return null;
  }
}

/** The meaningful end of podman's stderr (it logs warnings before the error). */
export function lastLines(stderr: string, count = 3): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/level=(warning|info)/.test(l));
  return lines.slice(-count).join(' / ') || 'no error message';
}
