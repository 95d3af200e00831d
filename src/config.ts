import { homedir } from 'node:os';
import { resolve } from 'node:path';
import type { RegistryStorageConfig } from './registry/index.js';

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
  /**
   * Usernames of the server's admins (`VALVE_ADMINS=alice,bob`): they collect registry garbage
   * and set teams' registry quotas. Roles are per team; these two concern every team.
   */
  admins: string[];
  /** Where the registry keeps blob bytes: under dataDir (default) or in an S3 bucket. */
  registryStorage: RegistryStorageConfig;
  /** Registry garbage collection: how long a push in progress may take, and an upload idle. */
  registryGc: { graceMs: number; uploadMaxAgeMs: number };
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
    admins: overrides.admins ?? listFromEnv(env, 'VALVE_ADMINS'),
    registryStorage: overrides.registryStorage ?? registryStorageFromEnv(env),
    registryGc: overrides.registryGc ?? {
      graceMs: intFromEnv(env, 'VALVE_REGISTRY_GC_GRACE_MINUTES', 60) * 60_000,
      uploadMaxAgeMs: intFromEnv(env, 'VALVE_REGISTRY_UPLOAD_MAX_AGE_HOURS', 24) * 3_600_000,
    },
  };
}

/**
 * `VALVE_REGISTRY_STORAGE=s3` with `VALVE_REGISTRY_S3_*`: BUCKET (required), ENDPOINT (for
 * S3-compatible servers), REGION (us-east-1), PREFIX, ACCESS_KEY_ID and SECRET_ACCESS_KEY
 * (else the AWS SDK's default chain), FORCE_PATH_STYLE (true when ENDPOINT is set). The secret
 * comes from the environment only, and is kept out of JSON and `inspect` so it is never logged.
 */
export function registryStorageFromEnv(env: NodeJS.ProcessEnv): RegistryStorageConfig {
  const driver = env.VALVE_REGISTRY_STORAGE || 'filesystem';
  if (driver === 'filesystem') return { driver };
  if (driver !== 's3') {
    throw new Error(
      `environment variable VALVE_REGISTRY_STORAGE: expected "filesystem" or "s3", got "${driver}"`,
    );
  }
  const bucket = env.VALVE_REGISTRY_S3_BUCKET;
  if (!bucket) {
    throw new Error('VALVE_REGISTRY_STORAGE=s3 needs VALVE_REGISTRY_S3_BUCKET');
  }
  const endpoint = env.VALVE_REGISTRY_S3_ENDPOINT || undefined;
  const pathStyle = env.VALVE_REGISTRY_S3_FORCE_PATH_STYLE;
  if (pathStyle && pathStyle !== 'true' && pathStyle !== 'false') {
    throw new Error(
      `environment variable VALVE_REGISTRY_S3_FORCE_PATH_STYLE: expected true or false, got "${pathStyle}"`,
    );
  }
  const config: RegistryStorageConfig = {
    driver,
    ...(endpoint ? { endpoint } : {}),
    bucket,
    region: env.VALVE_REGISTRY_S3_REGION || 'us-east-1',
    prefix: env.VALVE_REGISTRY_S3_PREFIX ?? '',
    ...(env.VALVE_REGISTRY_S3_ACCESS_KEY_ID
      ? { accessKeyId: env.VALVE_REGISTRY_S3_ACCESS_KEY_ID }
      : {}),
    forcePathStyle: pathStyle ? pathStyle === 'true' : endpoint !== undefined,
  };
  const secret = env.VALVE_REGISTRY_S3_SECRET_ACCESS_KEY;
  if (secret) {
    Object.defineProperty(config, 'secretAccessKey', { value: secret, enumerable: false });
  }
  return config;
}

function listFromEnv(env: NodeJS.ProcessEnv, name: string): string[] {
  return (env[name] ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
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
