import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable, Transform, pipeline } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { invalidInput } from '../errors.js';
import {
  hostPlatform,
  mediaTypes,
  validateRepositoryName,
  validateTag,
  type Platform,
  type Registry,
} from '../registry/index.js';
import {
  containerConfig,
  imageConfigDocument,
  imageManifestDocument,
  type ImageRuntimeConfig,
} from './image-config.js';
import { normalizeWorkingDir, parseRuntimeConfig, sourceDateEpoch } from './native.js';

/** Docker's default PATH, which a rootfs without a config needs to find `sh`. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ImportRootfsOptions {
  /** A `.tar` or `.tar.gz` file, or its bytes as a stream; gzip is told by its magic bytes. */
  tarball: string | NodeJS.ReadableStream;
  registry: Registry;
  repo: string;
  tag: string;
  /** The image's runtime settings; `env` adds to the default `PATH`. */
  config?: ImageRuntimeConfig & { workingDir?: string };
  /** Default: the host's. */
  platform?: Platform;
  onProgress?: (message: string) => void;
}

export interface ImportedImage {
  reference: string;
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar, the image's one diff ID. */
  diffId: string;
}

/**
 * Makes a single-layer base image from a root filesystem tarball, the air-gapped way to get a
 * base (like `podman import`): the tar goes into the layer byte for byte, gzipped
 * reproducibly (fixed level, no timestamp), so the same tar, `.tar` or `.tar.gz`, gives the
 * same layer; its diff ID is the sha256 of the tar. The config has the given settings and a
 * default `PATH`; the layer's files keep the owners, modes and times the tar has.
 */
export async function importRootfs(options: ImportRootfsOptions): Promise<ImportedImage> {
  const { registry, repo, tag } = options;
  const progress = options.onProgress ?? (() => undefined);
  validateRepositoryName(repo);
  validateTag(tag);
  const { workingDir, ...settings } = options.config ?? {};
  const runtime = parseRuntimeConfig(settings);
  const workDir = workingDir === undefined ? undefined : normalizeWorkingDir(workingDir);
  const created = new Date(sourceDateEpoch() * 1000).toISOString();

  const source =
    typeof options.tarball === 'string' ? createReadStream(options.tarball) : options.tarball;
  const diffHash = createHash('sha256');
  let tarSize = 0;
  let head = Buffer.alloc(0);
  const hashTar = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (tarSize < 512) {
        head = Buffer.concat([head, chunk.subarray(0, 512 - tarSize)]);
        if (head.length === 512 && !isTarHeader(head)) {
          callback(notATar());
          return;
        }
      }
      tarSize += chunk.length;
      diffHash.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      callback(tarSize < 512 ? notATar() : null);
    },
  });
  // An error anywhere in the chain destroys the gzip stream, so putBlob fails with it.
  const compressed = pipeline(
    Readable.from(tarBytes(source as AsyncIterable<Buffer>)),
    hashTar,
    createGzip({ level: 6 }),
    () => undefined,
  );
  const layer = await registry.putBlob(compressed);
  const diffId = `sha256:${diffHash.digest('hex')}`;
  progress(`layer ${layer.digest} (${tarSize} bytes of tar, ${layer.size} compressed)`);

  const platform = options.platform ?? hostPlatform();
  const layers = [{ mediaType: mediaTypes.ociLayerGzip, digest: layer.digest, size: layer.size }];
  const configBody = imageConfigDocument({
    base: { ...platform, layers: [], diffIds: [], config: {}, history: [] },
    config: containerConfig({ Env: [`PATH=${DEFAULT_PATH}`] }, runtime, workDir),
    diffIds: [diffId],
    created,
    history: [{ created, created_by: 'valve images import: root filesystem tarball' }],
  });
  const config = await registry.putBlob(configBody);
  const manifestBody = imageManifestDocument(
    { mediaType: mediaTypes.ociConfig, digest: config.digest, size: config.size },
    layers,
  );
  const { digest } = await registry.putManifest(repo, tag, manifestBody, mediaTypes.ociManifest);
  progress(`imported ${repo}:${tag} as ${digest}`);
  return {
    reference: `${repo}@${digest}`,
    digest,
    size: manifestBody.length + config.size + layer.size,
    diffId,
  };
}

/** The tar's bytes: gunzipped when the input starts with gzip's magic bytes. */
async function* tarBytes(source: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  const iterator = source[Symbol.asyncIterator]();
  try {
    const head: Buffer[] = [];
    let length = 0;
    while (length < 2) {
      const next = await iterator.next();
      if (next.done) break;
      const chunk = Buffer.from(next.value);
      head.push(chunk);
      length += chunk.length;
    }
    const all = (async function* () {
      yield* head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield Buffer.from(next.value);
      }
    })();
    const start = Buffer.concat(head);
    if (start[0] === 0x1f && start[1] === 0x8b) {
      yield* pipeline(Readable.from(all), createGunzip(), () => undefined) as AsyncIterable<Buffer>;
    } else {
      yield* all;
    }
  } finally {
    await iterator.return?.();
  }
}

/** A ustar header (POSIX `ustar\0` or GNU `ustar  `) at the start, as every tar tool writes. */
function isTarHeader(block: Buffer): boolean {
  return block.subarray(257, 262).toString('latin1') === 'ustar';
}

function notATar() {
  return invalidInput('tarball: not a tar archive (or a gzipped one): no ustar header', {
    parameter: 'tarball',
  });
}
