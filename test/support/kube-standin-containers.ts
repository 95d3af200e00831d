/**
 * The process side of the Kubernetes API stand-in: a container is a process tree in its own PID
 * and mount namespaces (`unshare`, root needed), its command PID 1, each volume a directory of
 * the pod bind-mounted at its mountPath; an exec enters those namespaces (`nsenter`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ContainerSpec {
  name: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: { name: string; value?: string }[];
  volumeMounts?: { name: string; mountPath: string }[];
}

export interface StandinContainer {
  /** Host PID of the container's PID 1 (what nsenter targets). */
  pid: number;
  /** The unshare process. */
  process: ChildProcess;
  env: Record<string, string>;
}

/** `unshare` gives the container its PID and mount namespaces; its command becomes PID 1 after the volume mounts. */
export async function startContainer(
  podDir: string,
  container: ContainerSpec,
  podName: string,
): Promise<StandinContainer> {
  const mounts = (container.volumeMounts ?? []).map(
    (m) =>
      `mkdir -p '${m.mountPath}' && mount --bind '${join(podDir, 'volumes', m.name)}' '${m.mountPath}'`,
  );
  const script = [...mounts, `cd '${container.workingDir ?? '/'}'`, 'echo ready', 'exec "$@"'].join(
    ' && ',
  );
  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOSTNAME: podName,
    HOME: '/root',
  };
  for (const variable of container.env ?? []) env[variable.name] = variable.value ?? '';
  const child = spawn(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      '--pid',
      '--fork',
      '--kill-child',
      '--mount-proc',
      'sh',
      '-c',
      script,
      'sh',
      ...container.command!,
      ...(container.args ?? []),
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve();
    });
    child.on('exit', (code) =>
      reject(new Error(`container ${container.name} exited (${code}): ${stderr.trim()}`)),
    );
    child.on('error', reject);
  });
  const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
    .trim()
    .split(/\s+/);
  const pid = Number(children[0]);
  if (!pid) throw new Error(`container ${container.name}: its PID 1 was not found`);
  return { pid, process: child, env };
}

export function stopContainer(container: StandinContainer): void {
  // PID 1 of the namespace: when it dies, the kernel kills everything else in it.
  try {
    process.kill(container.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
  container.process.kill('SIGKILL');
}

/** A process in the container's namespaces, with its environment, in its working directory. */
export function execInContainer(container: StandinContainer, command: string[]): ChildProcess {
  return spawn(
    'nsenter',
    ['--target', String(container.pid), '--mount', '--pid', '--wd', '--', ...command],
    {
      env: container.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
}
