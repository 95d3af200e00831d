import { homedir } from 'node:os';
import { resolve } from 'node:path';

/** Settings of one Valve server process. Every field can come from a flag or an env var. */
export interface ValveConfig {
  /** Where everything Valve stores lives: database, git repos, blobs, workspaces, logs. */
  dataDir: string;
  /** Interface the HTTP server binds to. */
  host: string;
  /** Port of the HTTP server (API, git, registry, console). 0 picks a free one. */
  port: number;
  /** First port of the range the local target gives to environment proxies and instances. */
  appPortBase: number;
  /** How many pipeline runs may execute at once. */
  maxParallelRuns: number;
  /** How many jobs (of all runs together) may execute at once. */
  maxParallelJobs: number;
}

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.VALVE_DATA_DIR ?? `${homedir()}/.valve`);
}

export function loadConfig(
  overrides: Partial<ValveConfig> = {},
  env: NodeJS.ProcessEnv = process.env,
): ValveConfig {
  return {
    dataDir: resolve(overrides.dataDir ?? defaultDataDir(env)),
    host: overrides.host ?? env.VALVE_HOST ?? '127.0.0.1',
    port: overrides.port ?? intFromEnv(env, 'VALVE_PORT', 7080),
    appPortBase: overrides.appPortBase ?? intFromEnv(env, 'VALVE_APP_PORT_BASE', 17000),
    maxParallelRuns: overrides.maxParallelRuns ?? intFromEnv(env, 'VALVE_MAX_PARALLEL_RUNS', 4),
    maxParallelJobs: overrides.maxParallelJobs ?? intFromEnv(env, 'VALVE_MAX_PARALLEL_JOBS', 4),
  };
}

function intFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`environment variable ${name}: expected a non-negative integer, got "${raw}"`);
  }
  return value;
}
