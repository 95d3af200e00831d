/**
 * How a `run` step executes inside a container (podman and Kubernetes alike): the script is a
 * file, and a small `sh` wrapper beside it changes to the step's directory, sets its
 * environment, runs the script with the step's shell, then kills every other process in the
 * container (`kill -9 -1` spares only PID 1, the container's keep-alive, and the caller), so no
 * process outlives its step, as with the local executor. A timeout or cancel runs that same
 * kill from a second exec.
 *
 * The environment travels in the wrapper file, never on a command line: a command line is
 * visible to every user of the host (`ps`) or logged by the Kubernetes API server (exec URLs).
 */
import { join } from 'node:path';
import type { ScriptRequest } from './executor.js';
import { shellCommand } from './shells.js';

/** The container's keep-alive command (PID 1): it must never exit on its own. */
export const keepAliveCommand = ['tail', '-f', '/dev/null'];

/** Kills everything in the container except PID 1: run as a separate exec. */
export const killStepCommand = ['sh', '-c', 'kill -9 -1'];

/**
 * Variables that describe the server's host, not the container: the image's own values apply.
 * `PATH` is kept, but the image's PATH is appended to it (so `$GITHUB_PATH` additions work and
 * the image's tools are found).
 */
export const hostOnlyVariables = new Set(['HOME', 'USER', 'SHELL', 'TMPDIR']);

export interface ContainerStepFiles {
  /** Run `sh <wrapper>` in the container. */
  wrapper: string;
  files: { path: string; content: string }[];
}

export function containerStepFiles(
  request: ScriptRequest,
  dir: string,
  id: string,
): ContainerStepFiles {
  const script = join(dir, `${id}.sh`);
  const wrapper = join(dir, `${id}.run`);
  const assignments: string[] = [];
  for (const [name, value] of Object.entries(request.env)) {
    // `env` would take a name starting with `-` for an option, and one with `=` cannot be set.
    if (!name || name.includes('=') || name.startsWith('-') || hostOnlyVariables.has(name))
      continue;
    if (name === 'PATH') assignments.push(`${shellQuote(`PATH=${value}`)}":$PATH"`);
    else assignments.push(shellQuote(`${name}=${value}`));
  }
  const lines = [
    '# Written by Valve: runs one step, then kills what it left behind.',
    `cd ${shellQuote(request.cwd)} || exit 1`,
    ['env', ...assignments, ...shellCommand(request.shell, script).map(shellQuote)].join(' '),
    'status=$?',
    'kill -9 -1 2>/dev/null',
    'exit $status',
    '',
  ];
  return {
    wrapper,
    files: [
      { path: script, content: request.script },
      { path: wrapper, content: lines.join('\n') },
    ],
  };
}

export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
