/**
 * The build subsystem's interface: `build()` makes an image with the builder the options call
 * for and puts it into Valve's registry; `importRootfs()` turns a root filesystem tarball into
 * a base image; `buildRoutes` is the HTTP API for the import. Other subsystems import from
 * here only.
 */
import { invalidInput } from '../errors.js';
import type { Builder, BuilderName, BuildOptions, BuiltImage } from './builder.js';

export type {
  Builder,
  BuilderCapabilities,
  BuilderName,
  BuildOptions,
  BuiltImage,
} from './builder.js';
export { builderNames } from './builder.js';
export type { ImageRuntimeConfig } from './image-config.js';
export { buildImage, type BuildImageOptions } from './native.js';
export { importRootfs, type ImportRootfsOptions } from './import-rootfs.js';
export { parseImageReference, type ImageReference } from './image-reference.js';
export type { RegistryCredentials } from './registry-client.js';
export { buildRoutes, type BuildRoutesOptions } from './routes.js';

/** Builders load on first use: the Dockerfile builder's process handling only when needed. */
const builders: Record<BuilderName, () => Promise<Builder>> = {
  native: async () => (await import('./native.js')).nativeBuilder,
  dockerfile: async () => (await import('./dockerfile.js')).dockerfileBuilder,
};

export function loadBuilder(name: BuilderName): Promise<Builder> {
  return builders[name]();
}

/** A Dockerfile selects the `dockerfile` builder; everything else is built natively. */
export function builderFor(options: Pick<BuildOptions, 'dockerfile'>): BuilderName {
  return options.dockerfile !== undefined ? 'dockerfile' : 'native';
}

/**
 * Builds with the builder the options call for, after checking that it can honour them (a
 * `buildArgs` without a Dockerfile is refused, naming the option) and that it can run here.
 */
export async function build(options: BuildOptions): Promise<BuiltImage> {
  const builder = await loadBuilder(builderFor(options));
  const { capabilities } = builder;
  const refuse = (option: string, why: string) =>
    invalidInput(`${option}: ${why}`, { parameter: option, builder: builder.name });
  if (options.buildArgs && Object.keys(options.buildArgs).length && !capabilities.buildArgs) {
    throw refuse('buildArgs', 'build arguments need a Dockerfile (dockerfile)');
  }
  if (!capabilities.contextLayout) {
    if (options.workingDir !== undefined) {
      throw refuse('workingDir', 'a Dockerfile build takes its WORKDIR from the Dockerfile');
    }
    if (options.exclude?.length) {
      throw refuse('exclude', 'a Dockerfile build leaves files out with a .dockerignore file');
    }
  }
  if (capabilities.runtimeConfig === 'labels') {
    const given = Object.entries(options.config ?? {}).filter(
      ([key, value]) => key !== 'labels' && value !== undefined,
    );
    if (given.length) {
      throw refuse(
        `config.${given[0]![0]}`,
        'a Dockerfile build takes entrypoint, cmd, env, ports and user from the Dockerfile',
      );
    }
  }
  if (options.base !== undefined && !capabilities.baseImages) {
    throw refuse('base', `the ${builder.name} builder cannot start from a base image`);
  }
  const missing = await builder.unavailable();
  if (missing) throw refuse(builder.name === 'dockerfile' ? 'dockerfile' : builder.name, missing);
  return builder.build(options);
}
