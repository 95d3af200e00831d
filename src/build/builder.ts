import type { Registry } from '../registry/index.js';
import type { ImageRuntimeConfig } from './image-config.js';
import type { RegistryCredentials } from './registry-client.js';

/**
 * The seam between "make an image" and how: every builder takes the same options and puts
 * the image into Valve's registry as `repo:tag`. `native` packs files on top of a base without
 * running anything; `dockerfile` runs a Dockerfile with buildah (or podman). `build()` in
 * index.ts picks one from the options.
 */

export const builderNames = ['native', 'dockerfile'] as const;
export type BuilderName = (typeof builderNames)[number];

/** What a builder can do; options it cannot honour are refused before it starts. */
export interface BuilderCapabilities {
  /** Starts from `base` (else from scratch, or the Dockerfile's FROM). */
  baseImages: boolean;
  /** Runs commands while building (RUN), which needs a container runtime. */
  runCommands: boolean;
  /** Takes `buildArgs`. */
  buildArgs: boolean;
  /** Takes `exclude` and `workingDir` (where the context goes in the image). */
  contextLayout: boolean;
  /** Which of `config` it applies: all of it, or only the labels (the Dockerfile says the rest). */
  runtimeConfig: 'all' | 'labels';
  /** Same inputs, same digest: always, or when the Dockerfile's RUN steps are reproducible. */
  reproducible: 'always' | 'if-run-steps-are';
  /** Programs it needs on the server's PATH; any one of them is enough. */
  requires: readonly string[];
}

export interface BuildOptions {
  /** The build context: the directory whose tree is packed (native) or sent (dockerfile). */
  contextDir: string;
  registry: Registry;
  repo: string;
  tag: string;
  /** Entrypoint, command, env, ports, user, labels (see `runtimeConfig`). */
  config?: ImageRuntimeConfig;
  /**
   * The image to start from: `team/app:tag` or `team/app@sha256:...` in Valve's registry, or
   * `host[:port]/name:tag` in any other. With a Dockerfile it replaces the first FROM.
   */
  base?: string;
  /** Credentials for the base's registry (not Valve's). */
  baseCredentials?: RegistryCredentials;
  /** `host[:port]`s reached over plain http besides loopback. */
  insecureRegistries?: readonly string[];
  /** The `host:port` of Valve's own registry, so that a base naming it is read locally. */
  localRegistryHost?: string;
  onProgress?: (message: string) => void;
  signal?: AbortSignal;

  /** native: names (at any depth) or context-relative paths left out; default `['.git']`. */
  exclude?: string[];
  /** native: where the context lands in the image, and the working directory; default `/app`. */
  workingDir?: string;

  /** dockerfile: the Dockerfile, absolute or relative to the context. Selects the builder. */
  dockerfile?: string;
  /** dockerfile: `ARG` values. */
  buildArgs?: Record<string, string>;
}

export interface BuiltImage {
  /** `repo@sha256:...`, what a deploy pins. */
  reference: string;
  /** The manifest's digest. */
  digest: string;
  /** Bytes a pull transfers: manifest, config and compressed layers. */
  size: number;
  layers: number;
  builder: BuilderName;
  /** The base it was built on, resolved to the digest of its image manifest. */
  base?: { reference: string; digest: string };
}

export interface Builder {
  readonly name: BuilderName;
  readonly capabilities: BuilderCapabilities;
  /** Why the builder cannot run on this machine (a program is missing), or null. */
  unavailable(): Promise<string | null>;
  build(options: BuildOptions): Promise<BuiltImage>;
}
