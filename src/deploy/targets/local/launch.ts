import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, posix, resolve, sep } from 'node:path';
import type { WorkloadSpec } from '../target.js';
import type { ImageConfig } from './image-cache.js';

/**
 * How to run an image as a host process, following the container rules where a host process
 * can: command = spec.command ?? Entrypoint, args = spec.args ?? Cmd (a spec command without
 * args drops the image Cmd, as in Kubernetes), cwd = rootfs + WorkingDir, env = image Env +
 * spec env. PATH is the host PATH first, then the image's PATH inside the rootfs: an image
 * with no OS layers (just the app) runs on the host's runtimes.
 */
export interface LaunchPlan {
  file: string;
  args: string[];
  cwd: string;
  /** Without PORT: each instance adds its own. */
  env: Record<string, string>;
}

export class LaunchError extends Error {
  override name = 'LaunchError';
}

export function planLaunch(input: {
  rootfs: string;
  config: ImageConfig;
  spec: Pick<WorkloadSpec, 'command' | 'args' | 'env'>;
  hostPath: string;
}): LaunchPlan {
  const { rootfs, config, spec } = input;
  const argv = spec.command
    ? [...spec.command, ...(spec.args ?? [])]
    : [...config.entrypoint, ...(spec.args ?? config.cmd)];
  const [program, ...args] = argv;
  if (!program)
    throw new LaunchError('the image has no Entrypoint or Cmd and the spec sets no command');

  const cwd = insideRoot(rootfs, config.workingDir);
  const env: Record<string, string> = {};
  for (const entry of config.env) {
    const equals = entry.indexOf('=');
    if (equals > 0) env[entry.slice(0, equals)] = entry.slice(equals + 1);
  }
  const imagePath = (env.PATH ?? '').split(':').filter((dir) => dir.startsWith('/'));
  env.PATH = [
    ...input.hostPath.split(delimiter).filter(Boolean),
    ...imagePath.map((dir) => insideRoot(rootfs, dir)),
  ].join(delimiter);
  Object.assign(env, spec.env);

  return { file: resolveProgram(program, rootfs, cwd, env.PATH), args, cwd, env };
}

/** A path of the image joined onto the rootfs, never above it. */
function insideRoot(rootfs: string, imagePath: string): string {
  const relative = posix.normalize(`/${imagePath}`).slice(1);
  const host = resolve(rootfs, relative);
  if (host !== rootfs && !host.startsWith(rootfs + sep)) return rootfs;
  return host;
}

/**
 * An absolute program is looked up in the rootfs, then on the host (`/usr/bin/env` in a
 * scratch image); a relative one with a slash is taken from cwd; a bare name goes through PATH.
 */
function resolveProgram(program: string, rootfs: string, cwd: string, path: string): string {
  const candidates = isAbsolute(program)
    ? [insideRoot(rootfs, program), program]
    : program.includes('/')
      ? [join(cwd, program)]
      : path.split(delimiter).map((dir) => join(dir, program));
  const found = candidates.find(isExecutableFile);
  if (!found) {
    throw new LaunchError(
      isAbsolute(program) || program.includes('/')
        ? `command ${program} does not exist in the image or on the host`
        : `command ${program} is not on the PATH (host PATH, then the image's)`,
    );
  }
  return found;
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
