import type { Descriptor } from '../registry/index.js';
import { hostPlatform, mediaTypes } from '../registry/index.js';

/** What the app asks of its image at run time (the Dockerfile's ENTRYPOINT, CMD, ENV, ...). */
export interface ImageRuntimeConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: Record<string, string>;
  exposedPorts?: number[];
  user?: string;
  labels?: Record<string, string>;
}

/** The image config's `config` object (OCI image-spec, config.md): the fields Valve sets. */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  /** Fields Valve does not set but keeps from a base image (StopSignal, Volumes, ...). */
  [field: string]: unknown;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  author?: string;
  empty_layer?: boolean;
}

/**
 * What an image starts from: its layers, their diff IDs, its config and history. Either
 * `scratchBase()` or a base image read by `resolveBase` (base-image.ts); the layers the build
 * adds go on top, and the config is merged onto the base's.
 */
export interface ImageBase {
  architecture: string;
  os: string;
  variant?: string;
  /** The base's layers as its manifest lists them (media types kept: Docker or OCI). */
  layers: Descriptor[];
  diffIds: string[];
  config: ContainerConfig;
  history: HistoryEntry[];
}

/** An empty base, like `FROM scratch`, for the host's platform. */
export function scratchBase(): ImageBase {
  return { ...hostPlatform(), layers: [], diffIds: [], config: {}, history: [] };
}

/**
 * The base's container config with the app's settings on top. Maps come out with sorted keys
 * so that equal settings give equal bytes whatever order the caller wrote them in.
 */
export function containerConfig(
  base: ContainerConfig,
  runtime: ImageRuntimeConfig,
  workingDir: string | undefined,
): ContainerConfig {
  const env = new Map<string, string>();
  for (const entry of base.Env ?? []) {
    const eq = entry.indexOf('=');
    env.set(eq === -1 ? entry : entry.slice(0, eq), eq === -1 ? '' : entry.slice(eq + 1));
  }
  const runtimeEnv = runtime.env ?? {};
  for (const key of Object.keys(runtimeEnv).sort()) env.set(key, runtimeEnv[key]!);

  const ports = new Set(Object.keys(base.ExposedPorts ?? {}));
  for (const port of runtime.exposedPorts ?? []) ports.add(`${port}/tcp`);

  const labels = { ...base.Labels, ...runtime.labels };
  const labelKeys = Object.keys(labels).sort();

  // Fields of the base's config that Valve does not manage stay as they were.
  const {
    User: _user,
    ExposedPorts: _ports,
    Env: _env,
    Entrypoint: _entrypoint,
    Cmd: _cmd,
    WorkingDir: _workingDir,
    Labels: _labels,
    ...kept
  } = base;
  return {
    ...kept,
    User: runtime.user ?? base.User,
    ExposedPorts: ports.size
      ? Object.fromEntries([...ports].sort(comparePorts).map((port) => [port, {}]))
      : undefined,
    Env: env.size ? [...env].map(([key, value]) => `${key}=${value}`) : undefined,
    Entrypoint: runtime.entrypoint ?? base.Entrypoint,
    // As with a Dockerfile, a new entrypoint drops the base's CMD.
    Cmd: runtime.cmd ?? (runtime.entrypoint ? undefined : base.Cmd),
    WorkingDir: workingDir ?? base.WorkingDir,
    Labels: labelKeys.length
      ? Object.fromEntries(labelKeys.map((key) => [key, labels[key]!]))
      : undefined,
  };
}

/** The OCI image config document (undefined fields are left out by JSON.stringify). */
export function imageConfigDocument(options: {
  base: ImageBase;
  config: ContainerConfig;
  diffIds: string[];
  created: string;
  history: HistoryEntry[];
}): Buffer {
  return Buffer.from(
    JSON.stringify({
      created: options.created,
      architecture: options.base.architecture,
      os: options.base.os,
      variant: options.base.variant,
      config: options.config,
      rootfs: { type: 'layers', diff_ids: options.diffIds },
      history: options.history,
    }),
  );
}

export function imageManifestDocument(config: Descriptor, layers: Descriptor[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      config,
      layers,
    }),
  );
}

/** `80/tcp` before `443/tcp`: by number, then by protocol. */
function comparePorts(a: string, b: string): number {
  return parseInt(a, 10) - parseInt(b, 10) || (a < b ? -1 : a > b ? 1 : 0);
}
