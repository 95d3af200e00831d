import path from 'node:path';
import { z } from 'zod';
import { invalidInput } from '../errors.js';
import {
  mediaTypes,
  validateRepositoryName,
  validateTag,
  type Registry,
} from '../registry/index.js';
import { listContext } from './context-files.js';
import {
  containerConfig,
  imageConfigDocument,
  imageManifestDocument,
  scratchBase,
  type ImageRuntimeConfig,
} from './image-config.js';
import { packLayer } from './layer.js';

export type { ImageRuntimeConfig } from './image-config.js';

export interface BuildImageOptions {
  /** The directory whose tree becomes the app layer. */
  contextDir: string;
  /** Names (at any depth) or context-relative paths left out; default `['.git']`. */
  exclude?: string[];
  /** Where the context lands in the image, and the process's working directory; default `/app`. */
  workingDir?: string;
  config: ImageRuntimeConfig;
  registry: Registry;
  repo: string;
  tag: string;
  onProgress?: (message: string) => void;
}

export interface BuiltImage {
  /** `repo@sha256:...`, what a deploy pins. */
  reference: string;
  /** The manifest's digest. */
  digest: string;
  /** Bytes a pull transfers: manifest, config and compressed layers. */
  size: number;
  layers: number;
}

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
 * Builds an image from a directory without a daemon: one reproducible gzip tar layer holding
 * the context under `workingDir`, an OCI image config and an OCI image manifest, stored in the
 * registry and tagged `repo:tag`. The same tree and options give the same digest, whatever the
 * files' timestamps, owners or the order the filesystem lists them in.
 *
 * The image has no base (like `FROM scratch`): it carries only the app, which the local
 * target runs with the host's runtimes. The steps are shaped for a base image: its layers and
 * config would replace `scratchBase()` and the app layer is appended on top.
 */
export async function buildImage(options: BuildImageOptions): Promise<BuiltImage> {
  const { registry, repo, tag } = options;
  const progress = options.onProgress ?? (() => undefined);
  validateRepositoryName(repo);
  validateTag(tag);
  const runtime = parseRuntimeConfig(options.config);
  const workingDir = normalizeWorkingDir(options.workingDir ?? '/app');
  const epoch = sourceDateEpoch();
  const created = new Date(epoch * 1000).toISOString();

  const base = scratchBase();

  progress(`packing ${options.contextDir} into ${workingDir}`);
  const entries = await listContext(
    options.contextDir,
    options.exclude ?? ['.git'],
    (file, reason) => progress(`skipped ${file}: ${reason}`),
  );
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
  };
}

function parseRuntimeConfig(config: ImageRuntimeConfig): ImageRuntimeConfig {
  const result = runtimeConfigSchema.safeParse(config);
  if (!result.success) {
    const problems = result.error.issues
      .map((issue) => `config.${issue.path.join('.')}: ${issue.message}`)
      .join('; ');
    throw invalidInput(`invalid image config: ${problems}`, { issues: result.error.issues });
  }
  return result.data;
}

function normalizeWorkingDir(dir: string): string {
  const normalized = path.posix.normalize(dir);
  if (!path.posix.isAbsolute(dir) || normalized.split('/').includes('..')) {
    throw invalidInput(`workingDir must be an absolute path like /app, got "${dir}"`, {
      workingDir: dir,
    });
  }
  return normalized.length > 1 ? normalized.replace(/\/+$/, '') : normalized;
}

/** Timestamps in the image: 0, or SOURCE_DATE_EPOCH (reproducible-builds.org) when set. */
function sourceDateEpoch(): number {
  const value = process.env.SOURCE_DATE_EPOCH;
  if (value === undefined || value === '') return 0;
  if (!/^\d+$/.test(value)) {
    throw invalidInput(`SOURCE_DATE_EPOCH must be whole seconds since 1970, got "${value}"`);
  }
  return Number(value);
}
