import { z } from 'zod';
import { isSha256Digest, type Registry } from '../index.js';

/** An OCI platform as the image index and the image config state it. */
export interface PlatformView {
  os: string;
  architecture: string;
  variant?: string;
}

export interface DescriptorView {
  mediaType: string;
  digest: string;
  size: number;
}

/** A manifest as stored, read for people: what it is made of. */
export interface ReadManifest {
  digest: string;
  mediaType: string;
  kind: 'image' | 'index';
  /** Bytes of the manifest itself. */
  bodySize: number;
  config: DescriptorView | null;
  layers: DescriptorView[];
  /** An index's entries, with the platform each one declares. */
  manifests: (DescriptorView & { platform: PlatformView | null })[];
  subject: DescriptorView | null;
  artifactType: string | null;
  annotations: Record<string, string>;
}

/** The parts of an image config people look at (OCI image-spec, config.md). */
export interface ImageConfigView extends DescriptorView {
  os: string | null;
  architecture: string | null;
  variant: string | null;
  created: string | null;
  entrypoint: string[] | null;
  cmd: string[] | null;
  env: string[];
  /** Exposed ports, e.g. "8080/tcp". */
  ports: string[];
  user: string | null;
  workdir: string | null;
  labels: Record<string, string>;
}

/** Config media types whose document is an image config (others are artifacts' own data). */
const imageConfigTypes = new Set([
  'application/vnd.oci.image.config.v1+json',
  'application/vnd.docker.container.image.v1+json',
]);
const indexTypes = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);
/** Configs are small JSON documents; a larger one is not read. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

const descriptor = z.object({
  mediaType: z.string(),
  digest: z.string(),
  size: z.number(),
});
const platform = z.object({
  os: z.string(),
  architecture: z.string(),
  variant: z.string().optional(),
});
// The registry validated the manifest when it was pushed; this reads only what it shows.
const manifestDocument = z.object({
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: descriptor.optional(),
  layers: z.array(descriptor).optional(),
  // Not checked on push: a platform or annotations that do not fit are shown as absent.
  manifests: z
    .array(descriptor.extend({ platform: platform.optional().catch(undefined) }))
    .optional(),
  subject: descriptor.optional(),
  annotations: z.record(z.string(), z.string()).optional().catch(undefined),
});
const strings = z.array(z.string()).nullish();
const configDocument = z.object({
  created: z.string().nullish(),
  os: z.string().nullish(),
  architecture: z.string().nullish(),
  variant: z.string().nullish(),
  config: z
    .object({
      User: z.string().nullish(),
      ExposedPorts: z.record(z.string(), z.unknown()).nullish(),
      Env: strings,
      Entrypoint: strings,
      Cmd: strings,
      WorkingDir: z.string().nullish(),
      Labels: z.record(z.string(), z.string()).nullish(),
    })
    .nullish(),
});

/**
 * Reads manifests and configs of one repository through the registry's API, each at most once
 * (one reader per request: tags sharing a digest, or an index's children, are read once).
 */
export class ImageReader {
  private readonly manifests = new Map<string, Promise<ReadManifest | null>>();
  private readonly configs = new Map<string, Promise<ImageConfigView>>();

  constructor(
    private readonly registry: Registry,
    readonly repo: string,
  ) {}

  /** The manifest a tag or digest names in this repository, or null. */
  manifest(reference: string): Promise<ReadManifest | null> {
    let found = this.manifests.get(reference);
    if (!found) {
      found = this.read(reference);
      this.manifests.set(reference, found);
    }
    return found;
  }

  /** The image config a descriptor points at; fields stay empty for a non-image config. */
  config(config: DescriptorView): Promise<ImageConfigView> {
    let found = this.configs.get(config.digest);
    if (!found) {
      found = this.readConfig(config);
      this.configs.set(config.digest, found);
    }
    return found;
  }

  /**
   * Bytes stored for a manifest: itself, its config and layers; for an index, itself and each
   * child's size (a child missing from the repository counts as its descriptor's size).
   */
  async size(manifest: ReadManifest): Promise<number> {
    if (manifest.kind === 'image') {
      return (
        manifest.bodySize +
        (manifest.config?.size ?? 0) +
        manifest.layers.reduce((sum, layer) => sum + layer.size, 0)
      );
    }
    let total = manifest.bodySize;
    for (const child of manifest.manifests) {
      const read = await this.manifest(child.digest);
      total += read && read.kind === 'image' ? await this.size(read) : child.size;
    }
    return total;
  }

  /** An image's platform (from its config), or every platform an index lists. */
  async platforms(manifest: ReadManifest): Promise<PlatformView[]> {
    if (manifest.kind === 'index') {
      return manifest.manifests.flatMap((child) => (child.platform ? [child.platform] : []));
    }
    if (!manifest.config) return [];
    const config = await this.config(manifest.config);
    if (!config.os || !config.architecture) return [];
    return [
      {
        os: config.os,
        architecture: config.architecture,
        ...(config.variant ? { variant: config.variant } : {}),
      },
    ];
  }

  /** When the image was built (its config's `created`); for an index, its newest child's. */
  async created(manifest: ReadManifest): Promise<string | null> {
    if (manifest.kind === 'image') {
      return manifest.config ? (await this.config(manifest.config)).created : null;
    }
    let newest: string | null = null;
    for (const child of manifest.manifests) {
      const read = await this.manifest(child.digest);
      const created = read && read.kind === 'image' ? await this.created(read) : null;
      if (created && (!newest || Date.parse(created) > Date.parse(newest))) newest = created;
    }
    return newest;
  }

  /** Adds every blob and manifest the manifest is made of to `into` (digest -> bytes). */
  async collectBlobs(manifest: ReadManifest, into: Map<string, number>): Promise<void> {
    if (into.has(manifest.digest)) return;
    into.set(manifest.digest, manifest.bodySize);
    if (manifest.config) into.set(manifest.config.digest, manifest.config.size);
    for (const layer of manifest.layers) into.set(layer.digest, layer.size);
    for (const child of manifest.manifests) {
      const read = await this.manifest(child.digest);
      if (read) await this.collectBlobs(read, into);
      else into.set(child.digest, child.size);
    }
  }

  private async read(reference: string): Promise<ReadManifest | null> {
    const stored = await this.registry.getManifest(this.repo, reference);
    if (!stored) return null;
    const document = manifestDocument.parse(JSON.parse(stored.body.toString('utf8')));
    const kind = indexTypes.has(stored.mediaType) || document.manifests ? 'index' : 'image';
    const plain = ({ mediaType, digest, size }: DescriptorView) => ({ mediaType, digest, size });
    return {
      digest: stored.digest,
      mediaType: stored.mediaType,
      kind,
      bodySize: stored.body.length,
      config: document.config ? plain(document.config) : null,
      layers: (document.layers ?? []).map(plain),
      manifests: (document.manifests ?? []).map((child) => ({
        ...plain(child),
        platform: child.platform ?? null,
      })),
      subject: document.subject ? plain(document.subject) : null,
      artifactType: document.artifactType ?? null,
      annotations: document.annotations ?? {},
    };
  }

  private async readConfig(config: DescriptorView): Promise<ImageConfigView> {
    const empty: ImageConfigView = {
      ...config,
      os: null,
      architecture: null,
      variant: null,
      created: null,
      entrypoint: null,
      cmd: null,
      env: [],
      ports: [],
      user: null,
      workdir: null,
      labels: {},
    };
    if (!imageConfigTypes.has(config.mediaType) || !isSha256Digest(config.digest)) return empty;
    if (config.size > MAX_CONFIG_BYTES) return empty;
    const stream = await this.registry.openBlob(config.digest);
    if (!stream) return empty;
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
    // A config that is not the JSON its media type promises shows as empty, not as an error:
    // the image itself is still there and can be pulled.
    let json: unknown;
    try {
      json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return empty;
    }
    const parsed = configDocument.safeParse(json);
    if (!parsed.success) return empty;
    const { config: run, ...image } = parsed.data;
    return {
      ...empty,
      os: image.os ?? null,
      architecture: image.architecture ?? null,
      variant: image.variant ?? null,
      created: image.created ?? null,
      entrypoint: run?.Entrypoint ?? null,
      cmd: run?.Cmd ?? null,
      env: run?.Env ?? [],
      ports: Object.keys(run?.ExposedPorts ?? {}),
      user: run?.User || null,
      workdir: run?.WorkingDir || null,
      labels: run?.Labels ?? {},
    };
  }
}
