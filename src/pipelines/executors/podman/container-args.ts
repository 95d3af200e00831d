import { writeFileSync } from 'node:fs';
import type { ContainerOptions } from '../container-options.js';

/** `podman run` flags for the options every container may have (see container-options.ts). */
export function optionArgs(options: ContainerOptions): string[] {
  const args: string[] = [];
  if (options.user) args.push('--user', options.user);
  if (options.hostname) args.push('--hostname', options.hostname);
  if (options.cpus) args.push('--cpus', options.cpus);
  if (options.memory) args.push('--memory', options.memory);
  if (options.shmSize) args.push('--shm-size', options.shmSize);
  for (const tmpfs of options.tmpfs) args.push('--tmpfs', tmpfs);
  return args;
}

/** Health check flags; the check itself is run by Valve (`podman healthcheck run`), see services.ts. */
export function healthArgs(health: ContainerOptions['health']): string[] {
  if (!health) return [];
  const args = ['--health-cmd', health.cmd];
  if (health.interval) args.push('--health-interval', health.interval);
  if (health.timeout) args.push('--health-timeout', health.timeout);
  if (health.retries !== undefined) args.push('--health-retries', String(health.retries));
  if (health.startPeriod) args.push('--health-start-period', health.startPeriod);
  return args;
}

/**
 * Writes an env file (mode 0600) and returns its `--env-file` flag: values on a podman command
 * line would be visible to every user of the host through `ps`. Podman's env files hold one
 * `NAME=value` per line, so a value cannot contain a newline.
 */
export function envFileArgs(env: Record<string, string>, file: string, where: string): string[] {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (/[\n\r]/.test(value) || /[\n\r=]/.test(name) || !name)
      throw new Error(`${where}: env ${name}: names and values cannot contain line breaks here`);
    lines.push(`${name}=${value}`);
  }
  if (!lines.length) return [];
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return ['--env-file', file];
}

/**
 * `ports:` entries as GitHub Actions writes them (`8080:80`, `80`, `127.0.0.1:8080:80`,
 * `80/udp`) to `--publish` flags. Without an address a port is published on 127.0.0.1 only
 * (GitHub publishes on every interface; a shared server should not); `80` alone gets a free
 * host port.
 */
export function publishArgs(ports: string[] | undefined, where: string): string[] {
  const args: string[] = [];
  for (const port of ports ?? []) {
    const match = /^(?:(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d*):)?(\d+)(\/(?:tcp|udp))?$/.exec(
      String(port).trim(),
    );
    if (!match) throw new Error(`${where}: ports: ${port} is not host:container or container`);
    const [, address, hostPort, containerPort, protocol] = match;
    args.push(
      '--publish',
      `${address ?? '127.0.0.1'}:${hostPort ?? ''}:${containerPort}${protocol ?? ''}`,
    );
  }
  return args;
}
