import path from 'node:path';
import { z } from 'zod';
import { invalidInput } from '../errors.js';
import { mediaTypes, validateRepositoryName, validateTag } from '../registry/index.js';
import { resolveBase } from './base-image.js';
import type { Builder, BuildOptions, BuiltImage } from './builder.js';
import { listContext } from './context-files.js';
import {
  containerConfig,
  imageConfigDocument,
  imageManifestDocument,
  scratchBase,
  type ImageRuntimeConfig,
} from './image-config.js';
import { packLayer } from './layer.js';

/** The native builder's options: everything but the Dockerfile's. */
export type BuildImageOptions = Omit<BuildOptions, 'dockerfile' | 'buildArgs'>;

export const nativeBuilder: Builder = {
  name: 'native',
  capabilities: {
    baseImages: true,
    runCommands: false,
    buildArgs: false,
    contextLayout: true,
    runtimeConfig: 'all',
    reproducible: 'always',
    requires: [],
  },
  unavailable: async () => null,
  build: (options) => buildImage(options),
};

const runtimeConfigSchema = z.object({
  entrypoint: z.array(z.string()).min(1).optional(),
  cmd: z.array(z.string()).optional(),
  env: z
    .record(
      z.string().regex(/^[^=\s]+$/, 'expected a variable name without "=" or spaces'),
      z.string(),
    )
    .optional(),
  exposedPorts: z.array(z.number().int().min(1).max(65535)).optional(),
  user: z.string().min(1).optional(),
  labels: z.record(z.string().min(1), z.string()).optional(),
});

/**
 * Builds an image without a daemon: the base's layers (none without `base`, like
 * `FROM scratch`), then one reproducible gzip tar layer holding the context under
 * `workingDir`; an OCI image config merged onto the base's and an OCI image manifest, stored
 * in the registry and tagged `repo:tag`.
 *
 * The same base digest, tree and options give the same digest, whatever the files'
 * timestamps, owners or the order the filesystem lists them in. A base from another registry
 * is copied into Valve's first, so the image is complete there.
 */
export async function buildImage(options: BuildImageOptions): Promise<BuiltImage> {
  const { registry, repo, tag } = options;
  const progress = options.onProgress ?? (() => undefined);
  validateRepositoryName(repo);
  validateTag(tag);
  const runtime = parseRuntimeConfig(options.config ?? {});
  const workingDir = normalizeWorkingDir(options.workingDir ?? '/app');
  const epoch = sourceDateEpoch();
  const created = new Date(epoch * 1000).toISOString();

  const resolved = options.base
    ? await resolveBase({
        base: options.base,
        registry,
        credentials: options.baseCredentials,
        insecureRegistries: options.insecureRegistries,
        localRegistryHost: options.localRegistryHost,
        onProgress: progress,
        signal: options.signal,
      })
    : undefined;
  const base = resolved?.image ?? scratchBase();

  progress(`packing ${options.contextDir} into ${workingDir}`);
  const entries = await listContext(
    options.contextDir,
    options.exclude ?? ['.git'],
    (file, reason) => progress(`skipped ${file}: ${reason}`),
  );
  options.signal?.throwIfAborted();
  const layer = await packLayer(entries, { workingDir, mtime: new Date(epoch * 1000) }, (data) =>
    registry.putBlob(data),
  );
  progress(
    `layer ${layer.descriptor.digest} (${entries.length} entries, ${layer.descriptor.size} bytes)`,
  );

  const layers = [...base.layers, layer.descriptor];
  const configBody = imageConfigDocument({
    base,
    config: containerConfig(base.config, runtime, workingDir),
    diffIds: [...base.diffIds, layer.diffId],
    created,
    // Deliberately free of the context's host path, which would change the digest.
    history: [
      ...base.history,
      { created, created_by: `valve build: copy context to ${workingDir}` },
    ],
  });
  const config = await registry.putBlob(configBody);
  progress(`config ${config.digest}`);

  const manifestBody = imageManifestDocument(
    { mediaType: mediaTypes.ociConfig, digest: config.digest, size: config.size },
    layers,
  );
  const { digest } = await registry.putManifest(repo, tag, manifestBody, mediaTypes.ociManifest);
  progress(`pushed ${repo}:${tag} as ${digest}`);

  return {
    reference: `${repo}@${digest}`,
    digest,
    size: manifestBody.length + config.size + layers.reduce((sum, each) => sum + each.size, 0),
    layers: layers.length,
    builder: 'native',
    ...(resolved ? { base: { reference: resolved.reference, digest: resolved.digest } } : {}),
  };
}

export function parseRuntimeConfig(config: ImageRuntimeConfig): ImageRuntimeConfig {
  const result = runtimeConfigSchema.safeParse(config);
  if (!result.success) {
    const problems = result.error.issues
      .map((issue) => `config.${issue.path.join('.')}: ${issue.message}`)
      .join('; ');
    throw invalidInput(`invalid image config: ${problems}`, { issues: result.error.issues });
  }
  return result.data;
}

export function normalizeWorkingDir(dir: string): string {
  const normalized = path.posix.normalize(dir);
  if (!path.posix.isAbsolute(dir) || normalized.split('/').includes('..')) {
    throw invalidInput(`workingDir must be an absolute path like /app, got "${dir}"`, {
      workingDir: dir,
    });
  }
  return normalized.length > 1 ? normalized.replace(/\/+$/, '') : normalized;
}

/** Timestamps in the image: 0, or SOURCE_DATE_EPOCH (reproducible-builds.org) when set. */
export function sourceDateEpoch(): number {
  const value = process.env.SOURCE_DATE_EPOCH;
  if (value === undefined || value === '') return 0;
  if (!/^\d+$/.test(value)) {
    throw invalidInput(`SOURCE_DATE_EPOCH must be whole seconds since 1970, got "${value}"`);
  }
  return Number(value);
}
