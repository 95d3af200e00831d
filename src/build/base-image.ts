import { z } from 'zod';
import { invalidInput, notFound } from '../errors.js';
import { hostPlatform, mediaTypes, type Platform, type Registry } from '../registry/index.js';
import type { ContainerConfig, HistoryEntry, ImageBase } from './image-config.js';
import {
  formatImageReference,
  manifestReference,
  parseImageReference,
  type ImageReference,
} from './image-reference.js';
import {
  RegistryClient,
  RegistryClientError,
  type FetchedManifest,
  type RegistryCredentials,
} from './registry-client.js';

/**
 * Reads a base image for a build: from Valve's own registry (`team/app:tag`, `@sha256:`),
 * directly through the Registry object, or from any other registry (`host[:port]/name:tag`)
 * with the pull client, copying its config and layers into Valve's registry so that the image
 * built on it is complete there. An index is resolved to the host's platform.
 */

export interface BaseImageOptions {
  /** The reference; one without a host is in Valve's registry. */
  base: string;
  registry: Registry;
  /** For the base's registry when it is not Valve's. */
  credentials?: RegistryCredentials;
  /** `host[:port]`s reached over plain http besides loopback. */
  insecureRegistries?: readonly string[];
  /** The `host:port` of Valve's own registry: a reference with it is read locally too. */
  localRegistryHost?: string;
  /** Default: the host's. */
  platform?: Platform;
  onProgress?: (message: string) => void;
  signal?: AbortSignal;
}

export interface ResolvedBase {
  /** The reference as given, and the digest of the image manifest it resolved to. */
  reference: string;
  digest: string;
  /** The image manifest (never an index), as the source stores it. */
  manifest: FetchedManifest;
  image: ImageBase;
  /** Whether it came from another registry (and was copied into Valve's). */
  remote: boolean;
}

/** The layer media types a base may have; foreign (non-distributable) layers are refused. */
const layerMediaTypes = new Set([
  mediaTypes.ociLayerGzip,
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
]);
const configMediaTypes = new Set([
  mediaTypes.ociConfig,
  'application/vnd.docker.container.image.v1+json',
]);
const CONFIG_LIMIT = 8 * 1024 * 1024;

const descriptor = z.object({
  mediaType: z.string().min(1),
  digest: z.string().regex(/^sha256:[a-f0-9]{64}$/, 'expected a sha256 digest'),
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
});
const imageManifest = z.object({
  schemaVersion: z.literal(2),
  config: descriptor,
  layers: z.array(descriptor),
});
const platformField = z.object({
  os: z.string(),
  architecture: z.string(),
  variant: z.string().optional(),
});
const imageIndex = z.object({
  schemaVersion: z.literal(2),
  manifests: z.array(descriptor.extend({ platform: platformField.optional() })),
});
const imageConfig = z.object({
  architecture: z.string().min(1),
  os: z.string().min(1),
  variant: z.string().optional(),
  config: z.record(z.string(), z.unknown()).nullish(),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(z.string()) }),
  history: z.array(z.record(z.string(), z.unknown())).nullish(),
});

type IndexEntry = z.infer<typeof imageIndex>['manifests'][number];

/** Where a base's manifests and blobs come from. */
interface BaseSource {
  /** `host/name` or `name`, for messages. */
  name: string;
  remote: boolean;
  manifest(reference: string): Promise<FetchedManifest | null>;
  /** Makes sure Valve's registry holds the blob, copying it there when the source is remote. */
  storeBlob(blob: z.infer<typeof descriptor>, what: string): Promise<void>;
}

export async function resolveBase(options: BaseImageOptions): Promise<ResolvedBase> {
  const reference = parseImageReference(options.base, 'base');
  const local = !reference.host || reference.host === options.localRegistryHost;
  const source = local ? localSource(options, reference) : remoteSource(options, reference);
  const platform = options.platform ?? hostPlatform();
  const progress = options.onProgress ?? (() => undefined);
  const shown = formatImageReference(reference);

  let manifest = await source.manifest(manifestReference(reference));
  if (!manifest) throw notFound(`base image ${shown}`);
  if (
    manifest.mediaType === mediaTypes.ociIndex ||
    manifest.mediaType === mediaTypes.dockerManifestList
  ) {
    const index = parse(imageIndex, manifest.body, `the index of ${shown}`);
    const entry = selectPlatform(index.manifests, platform, shown);
    progress(`base ${shown}: ${platformName(entry.platform!)} image ${entry.digest}`);
    const child = await source.manifest(entry.digest);
    if (!child) throw notFound(`base image ${source.name}@${entry.digest} (listed in ${shown})`);
    manifest = child;
  }
  if (
    manifest.mediaType !== mediaTypes.ociManifest &&
    manifest.mediaType !== mediaTypes.dockerManifest
  ) {
    throw invalidInput(`base: ${shown} is not an image (manifest type ${manifest.mediaType})`);
  }
  const document = parse(imageManifest, manifest.body, `the manifest of ${shown}`);
  if (!configMediaTypes.has(document.config.mediaType)) {
    throw invalidInput(
      `base: ${shown} is not a container image (its config is ${document.config.mediaType})`,
    );
  }
  for (const layer of document.layers) {
    if (!layerMediaTypes.has(layer.mediaType) || layer.urls) {
      throw invalidInput(
        `base: ${shown} has a layer of type ${layer.mediaType}${layer.urls ? ' with external urls' : ''}, which Valve cannot copy`,
      );
    }
  }

  await source.storeBlob(document.config, 'config');
  const config = parse(
    imageConfig,
    await readStoredBlob(options.registry, document.config.digest, CONFIG_LIMIT),
    `the config of ${shown}`,
  );
  if (config.rootfs.diff_ids.length !== document.layers.length) {
    throw invalidInput(
      `base: ${shown} lists ${document.layers.length} layer(s) but ${config.rootfs.diff_ids.length} diff ID(s)`,
    );
  }
  for (const [i, layer] of document.layers.entries()) {
    await source.storeBlob(layer, `layer ${i + 1}/${document.layers.length}`);
  }
  progress(
    `base ${shown}: ${manifest.digest} (${document.layers.length} layer(s), ${config.os}/${config.architecture})`,
  );

  return {
    reference: options.base,
    digest: manifest.digest,
    manifest,
    remote: source.remote,
    image: {
      architecture: config.architecture,
      os: config.os,
      variant: config.variant,
      layers: document.layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
      diffIds: config.rootfs.diff_ids,
      config: (config.config ?? {}) as ContainerConfig,
      history: (config.history ?? []) as HistoryEntry[],
    },
  };
}

/**
 * The index entry for `platform`: same os and architecture, then the same variant, else one
 * without a variant, else the first; none fails naming the platforms there are.
 */
export function selectPlatform(
  entries: readonly IndexEntry[],
  platform: Platform,
  shown: string,
): IndexEntry {
  const candidates = entries.filter(
    (entry) =>
      entry.platform?.os === platform.os && entry.platform.architecture === platform.architecture,
  );
  const chosen =
    candidates.find((entry) => platform.variant && entry.platform?.variant === platform.variant) ??
    candidates.find((entry) => !entry.platform?.variant) ??
    candidates[0];
  if (!chosen) {
    const there = entries
      .flatMap((entry) => (entry.platform ? [platformName(entry.platform)] : []))
      .filter((name) => name !== 'unknown/unknown');
    throw invalidInput(
      `base: ${shown} has no image for ${platformName(platform)} (it has ${there.join(', ') || 'none with a platform'})`,
    );
  }
  return chosen;
}

function platformName(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

function localSource(options: BaseImageOptions, reference: ImageReference): BaseSource {
  const { registry } = options;
  return {
    name: reference.repository,
    remote: false,
    async manifest(ref) {
      const stored = await registry.getManifest(reference.repository, ref);
      return stored && { body: stored.body, mediaType: stored.mediaType, digest: stored.digest };
    },
    async storeBlob(blob, what) {
      const stored = await registry.statBlob(blob.digest);
      if (stored?.size !== blob.size) {
        throw invalidInput(
          `base: the ${what} ${blob.digest} of ${reference.repository} is missing from Valve's registry`,
        );
      }
    },
  };
}

function remoteSource(options: BaseImageOptions, reference: ImageReference): BaseSource {
  const { registry } = options;
  const client = new RegistryClient({
    host: reference.host,
    credentials: options.credentials,
    insecureRegistries: options.insecureRegistries,
    signal: options.signal,
  });
  const name = `${reference.host}/${reference.repository}`;
  const progress = options.onProgress ?? (() => undefined);
  return {
    name,
    remote: true,
    manifest: (ref) => client.getManifest(reference.repository, ref),
    async storeBlob(blob, what) {
      if ((await registry.statBlob(blob.digest))?.size === blob.size) return;
      progress(`copying ${what} ${blob.digest} (${blob.size} bytes) from ${name}`);
      const stream = await client.openBlob(reference.repository, blob);
      try {
        await registry.putBlob(stream, blob.digest);
      } catch (error) {
        stream.destroy();
        // The client's own check names the registry; the store's is the same fact, later.
        throw error instanceof RegistryClientError
          ? error
          : new RegistryClientError(
              `copying ${what} ${blob.digest} from ${name}: ${(error as Error).message}`,
              { cause: error },
            );
      }
    },
  };
}

async function readStoredBlob(registry: Registry, digest: string, limit: number): Promise<Buffer> {
  const stream = await registry.openBlob(digest);
  if (!stream) throw new Error(`blob ${digest} disappeared from Valve's registry`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw invalidInput(`base: the image config ${digest} is over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parse<T extends z.ZodType>(schema: T, body: Buffer, what: string): z.infer<T> {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw invalidInput(`base: ${what} is not JSON: ${(error as Error).message}`);
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues
      .map((issue) => `${issue.path.join('.') || '(document)'}: ${issue.message}`)
      .join('; ');
    throw invalidInput(`base: ${what} is not valid: ${problems}`);
  }
  return result.data;
}
