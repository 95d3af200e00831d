import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import {
  manifestMediaTypes,
  mediaTypes,
  validateRepositoryName,
  validateTag,
  type Registry,
} from '../registry/index.js';

/**
 * OCI image layouts (image-spec, image-layout.md): a directory with `oci-layout`,
 * `index.json` and `blobs/sha256/<hex>`, what `buildah push ... oci:DIR` and `skopeo copy`
 * write and read. `loadOciLayout` puts one image of a layout into Valve's registry, checking
 * every blob's size and digest; `writeOciLayout` writes an image from it.
 */

const REF_NAME = 'org.opencontainers.image.ref.name';
const MANIFEST_LIMIT = 4 * 1024 * 1024;

const descriptor = z.object({
  mediaType: z.string().min(1),
  digest: z.string().regex(/^sha256:[a-f0-9]{64}$/, 'expected a sha256 digest'),
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
});
type LayoutDescriptor = z.infer<typeof descriptor>;
const index = z.object({ schemaVersion: z.literal(2), manifests: z.array(descriptor) });
const image = z.object({
  schemaVersion: z.literal(2),
  config: descriptor,
  layers: z.array(descriptor),
});

export class OciLayoutError extends Error {
  override name = 'OciLayoutError';
}

export interface LoadOciLayoutOptions {
  dir: string;
  registry: Registry;
  repo: string;
  tag: string;
  /** The image's `org.opencontainers.image.ref.name`; needed when the layout has several. */
  refName?: string;
}

export interface LoadedImage {
  digest: string;
  mediaType: string;
  /** Bytes a pull transfers: manifests, configs and layers. */
  size: number;
  /** Layers of the image (of its first image, for an index). */
  layers: number;
}

/** Stores the layout's image (an image manifest or an index with its images) as `repo:tag`. */
export async function loadOciLayout(options: LoadOciLayoutOptions): Promise<LoadedImage> {
  const { dir, registry, repo, tag } = options;
  validateRepositoryName(repo);
  validateTag(tag);
  const layout = await readJson(path.join(dir, 'oci-layout'), 'oci-layout');
  if ((layout as { imageLayoutVersion?: unknown }).imageLayoutVersion !== '1.0.0') {
    throw new OciLayoutError(`${dir} is not an OCI image layout 1.0.0`);
  }
  const top = parse(
    index,
    await readJson(path.join(dir, 'index.json'), 'index.json'),
    'index.json',
  );
  const named = options.refName
    ? top.manifests.filter((entry) => entry.annotations?.[REF_NAME] === options.refName)
    : top.manifests;
  if (named.length !== 1) {
    throw new OciLayoutError(
      `${dir} has ${named.length} images${options.refName ? ` named ${options.refName}` : ''}; expected exactly one`,
    );
  }
  const loader = new LayoutLoader(dir, registry, repo);
  const loaded = await loader.manifest(named[0]!, tag);
  return { ...loaded, size: loader.bytes };
}

class LayoutLoader {
  bytes = 0;

  constructor(
    private readonly dir: string,
    private readonly registry: Registry,
    private readonly repo: string,
  ) {}

  /** Stores what the manifest references, then the manifest, under `reference`. */
  async manifest(
    entry: LayoutDescriptor,
    reference: string,
  ): Promise<{ digest: string; mediaType: string; layers: number }> {
    if (!manifestMediaTypes.includes(entry.mediaType)) {
      throw new OciLayoutError(`${entry.digest} is a ${entry.mediaType}, not a manifest`);
    }
    if (entry.size > MANIFEST_LIMIT) {
      throw new OciLayoutError(`manifest ${entry.digest} is over ${MANIFEST_LIMIT} bytes`);
    }
    const body = await readFile(this.blobPath(entry.digest)).catch((error: unknown) => {
      throw new OciLayoutError(`manifest ${entry.digest} is missing from the layout`, {
        cause: error,
      });
    });
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (digest !== entry.digest || body.length !== entry.size) {
      throw new OciLayoutError(
        `manifest ${entry.digest} in the layout has digest ${digest} and ${body.length} bytes, not ${entry.size}`,
      );
    }
    this.bytes += body.length;
    let layers: number;
    const json: unknown = JSON.parse(body.toString('utf8'));
    if (
      entry.mediaType === mediaTypes.ociIndex ||
      entry.mediaType === mediaTypes.dockerManifestList
    ) {
      const children = parse(index, json, `index ${digest}`).manifests;
      layers = 0;
      for (const [i, child] of children.entries()) {
        const loaded = await this.manifest(child, child.digest);
        if (i === 0) layers = loaded.layers;
      }
    } else {
      const document = parse(image, json, `manifest ${digest}`);
      for (const blob of [document.config, ...document.layers]) await this.blob(blob);
      layers = document.layers.length;
    }
    await this.registry.putManifest(this.repo, reference, body, entry.mediaType);
    return { digest, mediaType: entry.mediaType, layers };
  }

  /** Copies a blob into the registry, which checks its digest as it is written. */
  private async blob(blob: LayoutDescriptor): Promise<void> {
    this.bytes += blob.size;
    if ((await this.registry.statBlob(blob.digest))?.size === blob.size) return;
    const file = this.blobPath(blob.digest);
    const found = await stat(file).catch(() => null);
    if (found?.size !== blob.size) {
      throw new OciLayoutError(
        `blob ${blob.digest} is ${found ? `${found.size} bytes, not ${blob.size}` : 'missing from the layout'}`,
      );
    }
    await this.registry.putBlob(createReadStream(file), blob.digest);
  }

  private blobPath(digest: string): string {
    return path.join(this.dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }
}

export interface WriteOciLayoutOptions {
  dir: string;
  registry: Registry;
  /** An image manifest (OCI or Docker) whose blobs are in the registry. */
  manifest: { body: Buffer; mediaType: string; digest: string };
  refName: string;
}

/** Writes an image from the registry as an OCI layout (e.g. as a base for buildah's FROM). */
export async function writeOciLayout(options: WriteOciLayoutOptions): Promise<void> {
  const { dir, registry, manifest } = options;
  const blobs = path.join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const document = parse(image, JSON.parse(manifest.body.toString('utf8')), 'the manifest');
  for (const blob of [document.config, ...document.layers]) {
    const stream = await registry.openBlob(blob.digest);
    if (!stream) throw new OciLayoutError(`blob ${blob.digest} is not in Valve's registry`);
    await pipeline(stream, createWriteStream(path.join(blobs, blob.digest.slice(7))));
  }
  await writeFile(path.join(blobs, manifest.digest.slice(7)), manifest.body);
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: manifest.mediaType,
          digest: manifest.digest,
          size: manifest.body.length,
          annotations: { [REF_NAME]: options.refName },
        },
      ],
    }),
  );
}

async function readJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new OciLayoutError(`${what} is missing from the layout`, { cause: error });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new OciLayoutError(`${what} is not JSON: ${(error as Error).message}`);
  }
}

function parse<T extends z.ZodType>(schema: T, json: unknown, what: string): z.infer<T> {
  const result = schema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues
      .map((issue) => `${issue.path.join('.') || '(document)'}: ${issue.message}`)
      .join('; ');
    throw new OciLayoutError(`${what} in the layout is not valid: ${problems}`);
  }
  return result.data;
}
