/**
 * The `options:` of a job container or a service, as GitHub Actions passes them to `docker
 * create`: only a documented subset is accepted. Flags that would reach outside the job
 * (volumes, privileges, host namespaces, networks) are refused, because a workflow is not
 * trusted with the server's host.
 */
export interface ContainerOptions {
  env: Record<string, string>;
  health?: {
    cmd: string;
    interval?: string;
    timeout?: string;
    retries?: number;
    startPeriod?: string;
  };
  entrypoint?: string;
  user?: string;
  hostname?: string;
  cpus?: string;
  memory?: string;
  shmSize?: string;
  tmpfs: string[];
}

const flags = {
  '--env': 'env',
  '-e': 'env',
  '--health-cmd': 'health-cmd',
  '--health-interval': 'health-interval',
  '--health-timeout': 'health-timeout',
  '--health-retries': 'health-retries',
  '--health-start-period': 'health-start-period',
  '--entrypoint': 'entrypoint',
  '--user': 'user',
  '-u': 'user',
  '--hostname': 'hostname',
  '-h': 'hostname',
  '--cpus': 'cpus',
  '--memory': 'memory',
  '-m': 'memory',
  '--shm-size': 'shm-size',
  '--tmpfs': 'tmpfs',
} as const;

export const supportedOptions = Object.keys(flags).filter((f) => f.startsWith('--'));

const duration = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

/** Parses an `options:` string; throws naming the first flag that is not supported. */
export function parseContainerOptions(
  options: string | undefined,
  where: string,
): ContainerOptions {
  const parsed: ContainerOptions = { env: {}, tmpfs: [] };
  const words = splitWords(options ?? '', where);
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    const eq = word.startsWith('--') ? word.indexOf('=') : -1;
    const flag = eq > 0 ? word.slice(0, eq) : word;
    const kind = (flags as Record<string, (typeof flags)[keyof typeof flags]>)[flag];
    if (!kind) {
      throw new Error(
        `${where}: options: ${flag} is not supported (supported: ${supportedOptions.join(', ')})`,
      );
    }
    const value = eq > 0 ? word.slice(eq + 1) : words[++i];
    if (value === undefined) throw new Error(`${where}: options: ${flag} needs a value`);
    const health = () => (parsed.health ??= { cmd: '' });
    const checkDuration = () => {
      if (!duration.test(value))
        throw new Error(`${where}: options: ${flag} ${value} is not a duration like 10s or 1m30s`);
      return value;
    };
    switch (kind) {
      case 'env': {
        const at = value.indexOf('=');
        // `-e NAME` takes the value from docker's own environment: Valve never passes the server's.
        if (at <= 0) throw new Error(`${where}: options: ${flag} ${value}: use NAME=value`);
        parsed.env[value.slice(0, at)] = value.slice(at + 1);
        break;
      }
      case 'health-cmd':
        health().cmd = value;
        break;
      case 'health-interval':
        health().interval = checkDuration();
        break;
      case 'health-timeout':
        health().timeout = checkDuration();
        break;
      case 'health-start-period':
        health().startPeriod = checkDuration();
        break;
      case 'health-retries':
        if (!/^\d+$/.test(value))
          throw new Error(`${where}: options: ${flag} ${value} is not a number`);
        health().retries = Number(value);
        break;
      case 'entrypoint':
        parsed.entrypoint = value;
        break;
      case 'user':
        parsed.user = value;
        break;
      case 'hostname':
        parsed.hostname = value;
        break;
      case 'cpus':
        parsed.cpus = value;
        break;
      case 'memory':
        parsed.memory = value;
        break;
      case 'shm-size':
        parsed.shmSize = value;
        break;
      case 'tmpfs':
        parsed.tmpfs.push(value);
        break;
    }
  }
  if (parsed.health && !parsed.health.cmd)
    throw new Error(`${where}: options: --health-* options need --health-cmd`);
  return parsed;
}

/** A Go duration (`1m30s`, `500ms`) in whole seconds, at least 1. */
export function durationSeconds(value: string): number {
  const units: Record<string, number> = {
    ns: 1e-9,
    us: 1e-6,
    µs: 1e-6,
    ms: 1e-3,
    s: 1,
    m: 60,
    h: 3600,
  };
  let seconds = 0;
  for (const [, amount, unit] of value.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g))
    seconds += Number(amount) * units[unit!]!;
  return Math.max(1, Math.ceil(seconds));
}

/** Splits like a POSIX shell: whitespace separates words; quotes and backslashes group. */
function splitWords(text: string, where: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new Error(`${where}: options: unterminated quote`);
      word = (word ?? '') + text.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      word ??= '';
      for (i++; i < text.length && text[i] !== '"'; i++) {
        if (text[i] === '\\' && /["\\$`]/.test(text[i + 1] ?? '')) i++;
        word += text[i];
      }
      if (i >= text.length) throw new Error(`${where}: options: unterminated quote`);
    } else if (c === '\\' && i + 1 < text.length) {
      word = (word ?? '') + text[++i];
    } else {
      word = (word ?? '') + c;
    }
  }
  if (word !== null) words.push(word);
  return words;
}
