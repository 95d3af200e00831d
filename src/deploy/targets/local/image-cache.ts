import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { hostPlatform, type Platform } from '../../../registry/index.js';
import { imageInvalid, imageUnavailable } from '../shared/image-errors.js';
import type { ImageSource, WorkloadImage } from '../target.js';
import { extractLayer, type LayerCompression } from './layer-extract.js';
import { changedFiles, indexFiles, type FileIndex } from './rootfs-files.js';

/**
 * Unpacks OCI images into directories, once per manifest digest:
 * `<dir>/<digest-hex>/rootfs` and `<dir>/<digest-hex>/image.json` (the image config). An image
 * is unpacked into a temp directory and renamed into place, so a directory that exists is
 * complete. Beside each root, `<root>.files.json` indexes its files (rootfs-files.ts) to find
 * files changed by hand. `refresh` unpacks a fresh root next to a drifted one
 * (`rootfs-<random>`, named in `<dir>/<digest-hex>/current`): a root in use is never
 * rewritten.
 */

const mediaTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

const layerCompressions: Record<string, LayerCompression> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'gzip',
};

const descriptorSchema = z.object({
  mediaType: z.string().optional(),
  digest: z.string(),
  size: z.number().optional(),
  platform: z
    .object({ os: z.string(), architecture: z.string(), variant: z.string().optional() })
    .optional(),
});
type Descriptor = z.infer<typeof descriptorSchema>;

const manifestSchema = z.object({
  mediaType: z.string().optional(),
  config: descriptorSchema.optional(),
  layers: z.array(descriptorSchema).optional(),
  manifests: z.array(descriptorSchema).optional(),
});

const stringList = z.array(z.string()).nullish();

/** The part of the OCI image config a host process needs. */
const imageConfigSchema = z.object({
  config: z
    .object({
      Entrypoint: stringList,
      Cmd: stringList,
      Env: stringList,
      WorkingDir: z.string().nullish(),
      User: z.string().nullish(),
    })
    .nullish(),
});

export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
}

export interface UnpackedImage {
  digest: string;
  rootfs: string;
  config: ImageConfig;
}

export class ImageCache {
  private readonly unpacking = new Map<string, Promise<UnpackedImage>>();
  /** File indexes by root directory, read once. */
  private readonly indexes = new Map<string, Promise<FileIndex>>();

  constructor(
    private readonly dir: string,
    private readonly source: ImageSource,
  ) {}

  /** The unpacked image, unpacking it first when this digest is not cached yet. */
  prepare(image: WorkloadImage, onProgress?: (message: string) => void): Promise<UnpackedImage> {
    let pending = this.unpacking.get(image.digest);
    if (!pending) {
      pending = this.load(image, onProgress).finally(() => this.unpacking.delete(image.digest));
      this.unpacking.set(image.digest, pending);
    }
    return pending;
  }

  /** How `rootfs` differs from what was unpacked there, one sentence per file; [] when not. */
  async verify(rootfs: string): Promise<string[]> {
    return changedFiles(rootfs, await this.fileIndex(rootfs));
  }

  /**
   * A root of `image` without drift, to replace `stale`: the image's current root when that
   * is another one and unchanged, else a fresh unpack beside the others.
   */
  async refresh(image: WorkloadImage, stale: string): Promise<UnpackedImage> {
    const final = join(this.dir, digestDirName(image.digest));
    const current = await readCached(final, image.digest);
    if (current && current.rootfs !== stale && (await this.verify(current.rootfs)).length === 0) {
      return current;
    }
    const random = randomBytes(4).toString('hex');
    const temp = join(this.dir, `.tmp-${digestDirName(image.digest)}-${random}`);
    const name = `rootfs-${random}`;
    try {
      const config = await this.unpackInto(temp, image);
      await mkdir(final, { recursive: true });
      // The index first: a root that is in place always has one.
      await rename(join(temp, 'rootfs.files.json'), join(final, `${name}.files.json`));
      await rename(join(temp, 'rootfs'), join(final, name));
      await writeFile(join(temp, 'current'), `${name}\n`);
      await rename(join(temp, 'current'), join(final, 'current'));
      if (!current)
        await writeFile(join(final, 'image.json'), JSON.stringify(config, null, 2) + '\n');
      return { digest: image.digest, rootfs: join(final, name), config };
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
  }

  /** Removes a root nothing runs from any more (one `refresh` replaced). */
  async removeRoot(rootfs: string): Promise<void> {
    const final = dirname(rootfs);
    const current = await currentRootName(final);
    if (basename(rootfs) === current) return;
    this.indexes.delete(rootfs);
    await rm(rootfs, { recursive: true, force: true });
    await rm(`${rootfs}.files.json`, { force: true });
  }

  /** The root's index; a root unpacked before indexes existed is indexed as it is now. */
  private fileIndex(rootfs: string): Promise<FileIndex> {
    let index = this.indexes.get(rootfs);
    if (!index) {
      index = readIndex(rootfs).catch((error: unknown) => {
        this.indexes.delete(rootfs);
        throw error;
      });
      this.indexes.set(rootfs, index);
    }
    return index;
  }

  /** Leftovers of unpacks a crash interrupted; only safe while nothing unpacks (at start). */
  async removeTemps(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.tmp-'))
        await rm(join(this.dir, name), { recursive: true, force: true });
    }
  }

  private async load(
    image: WorkloadImage,
    onProgress?: (message: string) => void,
  ): Promise<UnpackedImage> {
    const final = join(this.dir, digestDirName(image.digest));
    const cached = await readCached(final, image.digest);
    if (cached) return cached;

    onProgress?.(`unpacking image ${image.reference}`);
    const temp = join(
      this.dir,
      `.tmp-${digestDirName(image.digest)}-${randomBytes(4).toString('hex')}`,
    );
    try {
      const config = await this.unpackInto(temp, image);
      await writeFile(join(temp, 'image.json'), JSON.stringify(config, null, 2) + '\n');
      await mkdir(this.dir, { recursive: true });
      try {
        await rename(temp, final);
      } catch (error) {
        // Another server process finished the same digest first: theirs is as good as ours.
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
        await rm(temp, { recursive: true, force: true });
      }
      return { digest: image.digest, rootfs: join(final, 'rootfs'), config };
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      throw error;
    }
  }

  /** Unpacks the layers into `<temp>/rootfs`, indexes it into `<temp>/rootfs.files.json`. */
  private async unpackInto(temp: string, image: WorkloadImage): Promise<ImageConfig> {
    await mkdir(join(temp, 'rootfs'), { recursive: true });
    const manifest = await this.imageManifest(image);
    if (!manifest.config) throw imageInvalid(image, 'manifest has no config');
    const configBody = await this.readBlob(image, manifest.config.digest);
    const config = parseImageConfig(image, configBody);
    for (const [index, layer] of (manifest.layers ?? []).entries()) {
      const compression = layerCompressions[layer.mediaType ?? ''];
      if (!compression) {
        throw imageInvalid(
          image,
          `layer ${index + 1} has unsupported media type ${layer.mediaType}`,
        );
      }
      const blob = await this.source.openBlob(layer.digest);
      if (!blob) throw imageUnavailable(image, `layer ${layer.digest} is missing`);
      try {
        await extractLayer(join(temp, 'rootfs'), blob, { digest: layer.digest, compression });
      } catch (error) {
        throw imageInvalid(
          image,
          `layer ${index + 1} (${layer.digest}): ${(error as Error).message}`,
        );
      }
    }
    const index = await indexFiles(join(temp, 'rootfs'));
    await writeFile(join(temp, 'rootfs.files.json'), JSON.stringify(index) + '\n');
    return config;
  }

  /** The image manifest for this host, choosing from an index by platform. */
  private async imageManifest(image: WorkloadImage): Promise<z.infer<typeof manifestSchema>> {
    let digest = image.digest;
    for (let depth = 0; depth < 3; depth++) {
      const stored = await this.source.getManifest(image.repo, digest);
      if (!stored) throw imageUnavailable(image, `manifest ${digest} is not in ${image.repo}`);
      verifyDigest(image, digest, stored.body);
      const parsed = manifestSchema.safeParse(JSON.parse(stored.body.toString('utf8')));
      if (!parsed.success) throw imageInvalid(image, `manifest ${digest} is not an OCI manifest`);
      const mediaType = parsed.data.mediaType ?? stored.mediaType;
      const isIndex =
        mediaType === mediaTypes.ociIndex ||
        mediaType === mediaTypes.dockerList ||
        (parsed.data.manifests !== undefined && parsed.data.layers === undefined);
      if (!isIndex) return parsed.data;
      digest = pickPlatform(parsed.data.manifests ?? [], hostPlatform(), image).digest;
    }
    throw imageInvalid(image, 'image indexes nest too deep');
  }

  private async readBlob(image: WorkloadImage, digest: string): Promise<Buffer> {
    const stream = await this.source.openBlob(digest);
    if (!stream) throw imageUnavailable(image, `blob ${digest} is missing`);
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer | string>) {
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    }
    const body = Buffer.concat(chunks);
    verifyDigest(image, digest, body);
    return body;
  }
}

async function readCached(final: string, digest: string): Promise<UnpackedImage | null> {
  let text: string;
  try {
    text = await readFile(join(final, 'image.json'), 'utf8');
  } catch {
    return null;
  }
  const rootfs = join(final, await currentRootName(final));
  return { digest, rootfs, config: JSON.parse(text) as ImageConfig };
}

/** `rootfs`, or the fresh root a repair unpacked (named in `current`). */
async function currentRootName(final: string): Promise<string> {
  try {
    const name = (await readFile(join(final, 'current'), 'utf8')).trim();
    if (/^rootfs-[0-9a-f]+$/.test(name)) return name;
  } catch {
    // No repair happened: the first root.
  }
  return 'rootfs';
}

async function readIndex(rootfs: string): Promise<FileIndex> {
  const file = `${rootfs}.files.json`;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as FileIndex;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const index = await indexFiles(rootfs);
  await writeFile(file, JSON.stringify(index) + '\n');
  return index;
}

function parseImageConfig(image: WorkloadImage, body: Buffer): ImageConfig {
  const parsed = imageConfigSchema.safeParse(JSON.parse(body.toString('utf8')));
  if (!parsed.success)
    throw imageInvalid(image, 'image config is not valid JSON of the OCI config format');
  const config = parsed.data.config;
  return {
    entrypoint: config?.Entrypoint ?? [],
    cmd: config?.Cmd ?? [],
    env: config?.Env ?? [],
    workingDir: config?.WorkingDir || '/',
  };
}

/** The index entry for `platform`; a single-entry index is taken whatever it says. */
export function pickPlatform(
  manifests: Descriptor[],
  platform: Platform,
  image: WorkloadImage,
): Descriptor {
  // Build attestations are listed with platform unknown/unknown.
  const runnable = manifests.filter((entry) => entry.platform?.os !== 'unknown');
  const match =
    runnable.find(
      (entry) =>
        entry.platform?.os === platform.os && entry.platform.architecture === platform.architecture,
    ) ?? (runnable.length === 1 ? runnable[0] : undefined);
  if (match) return match;
  const available = runnable
    .map((entry) => `${entry.platform?.os ?? '?'}/${entry.platform?.architecture ?? '?'}`)
    .join(', ');
  throw imageInvalid(
    image,
    `no manifest for ${platform.os}/${platform.architecture} in the index (has ${available || 'none'})`,
  );
}

/** `sha256:ab…` -> `ab…`; other algorithms keep their name so they never collide. */
export function digestDirName(digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return algorithm === 'sha256' && hex ? hex : digest.replace(/[^a-zA-Z0-9]/g, '-');
}

function verifyDigest(image: WorkloadImage, digest: string, body: Buffer): void {
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw imageInvalid(image, `unsupported digest algorithm in ${digest}`);
  }
  const actual = createHash(algorithm).update(body).digest('hex');
  if (actual !== digest.slice(colon + 1)) {
    throw imageInvalid(image, `content of ${digest} does not match its digest`);
  }
}
