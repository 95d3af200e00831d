import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

/**
 * The `podman` command line, which is how this target drives podman: the CLI is podman's
 * stable interface, needs no service running, and works the same against a remote host
 * (`podman --remote`, or a wrapper script given as the binary).
 */

export interface PodmanResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Podman exits 125 when the command itself failed, 125-127 when the container could not start. */
export class PodmanError extends Error {
  constructor(
    readonly args: string[],
    readonly result: PodmanResult,
  ) {
    super(`podman ${args[0]} failed: ${lastLines(result.stderr) || `exit code ${result.code}`}`);
    this.name = 'PodmanError';
  }

  /** The container or image named does not exist. */
  get notFound(): boolean {
    return /no such (container|object|image)|not known|does not exist/i.test(this.result.stderr);
  }
}

export class PodmanCli {
  constructor(readonly binary = 'podman') {}

  /** Runs podman to completion; never throws (a missing binary is exit code 127). */
  run(args: string[], options: { timeoutMs?: number } = {}): Promise<PodmanResult> {
    return new Promise((resolve) => {
      const child = spawn(this.binary, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: options.timeoutMs,
        killSignal: 'SIGKILL',
      });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
      const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString('utf8');
      child.on('error', (error) =>
        resolve({ code: 127, stdout: text(stdout), stderr: `${text(stderr)}${error.message}` }),
      );
      child.on('close', (code, signal) =>
        resolve({
          code: code ?? 1,
          stdout: text(stdout),
          stderr: text(stderr) + (signal ? `\n(podman ${args[0]} killed by ${signal})` : ''),
        }),
      );
    });
  }

  /** Runs podman and returns its stdout; throws a PodmanError when it fails. */
  async check(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
    const result = await this.run(args, options);
    if (result.code !== 0) throw new PodmanError(args, result);
    return result.stdout;
  }

  /**
   * Runs podman and hands its stdout to `read` as it arrives (`podman export`, `podman cp`),
   * for output too large to hold. When `read` settles before the output ends, podman is killed
   * (it may have much more to say, and does not stop on a closed pipe). Throws a PodmanError
   * when podman failed while `read` was still reading.
   */
  async stream<T>(
    args: string[],
    read: (stdout: Readable) => Promise<T>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    const child = spawn(this.binary, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: options.timeoutMs,
      killSignal: 'SIGKILL',
    });
    const stderr: Buffer[] = [];
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    const exited = new Promise<number>((resolve) => {
      child.on('error', (error) => {
        stderr.push(Buffer.from(error.message));
        resolve(127);
      });
      child.on('close', (code) => resolve(code ?? 1));
    });
    let outcome: { value: T } | { error: unknown };
    try {
      outcome = { value: await read(child.stdout) };
    } catch (error) {
      outcome = { error };
    }
    const early = !child.stdout.readableEnded;
    if (early) {
      child.stdout.destroy();
      child.kill('SIGKILL');
    }
    const code = await exited;
    if (!early && code !== 0) {
      throw new PodmanError(args, {
        code,
        stdout: '',
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    }
    if ('error' in outcome) throw outcome.error;
    return outcome.value;
  }

  /**
   * Output of a command whose stdout and stderr are both the answer (`podman logs`), in the
   * order the chunks arrived.
   */
  combined(args: string[]): Promise<{ code: number; output: string }> {
    return new Promise((resolve) => {
      const child = spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      const chunks: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
      child.on('error', (error) => resolve({ code: 127, output: error.message }));
      child.on('close', (code) =>
        resolve({ code: code ?? 1, output: Buffer.concat(chunks).toString('utf8') }),
      );
    });
  }
}

/** The meaningful end of podman's stderr (it logs warnings and info lines before the error). */
export function lastLines(stderr: string, count = 3): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/level=(warning|info|debug)/.test(line));
  return lines.slice(-count).join(' / ');
}
