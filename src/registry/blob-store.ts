import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from './errors.js';
import { existsOnDisk, renameDurably, sizeIfExists } from './durable-fs.js';
import { sha256Hex } from './names.js';

export type BlobSource = Buffer | NodeJS.ReadableStream;

/** An inclusive byte range, as HTTP `Range` and the spec's upload ranges count. */
export interface BlobRange {
  start: number;
  end: number;
}

export interface StoredBlob {
  digest: string;
  size: number;
}

/**
 * Content-addressed blob storage on the local filesystem: `blobs/sha256/<2 hex>/<hex>`.
 * A blob becomes visible only by a rename of a fully written, fsynced and verified file, so a
 * half-finished write is never readable under a digest. Blobs are immutable and deduplicated.
 */
export class BlobStore {
  private readonly blobsDir: string;
  private readonly tempDir: string;

  /** `root` is `<dataDir>/registry`; temp files live inside it so renames stay on one disk. */
  constructor(root: string) {
    this.blobsDir = path.join(root, 'blobs', 'sha256');
    this.tempDir = path.join(root, 'tmp');
  }

  pathOf(digest: string): string {
    const hex = sha256Hex(digest);
    return path.join(this.blobsDir, hex.slice(0, 2), hex);
  }

  /** Streams `data` to a temp file while hashing, verifies, fsyncs, and moves it into place. */
  async put(data: BlobSource, expectedDigest?: string): Promise<StoredBlob> {
    if (expectedDigest !== undefined) sha256Hex(expectedDigest);
    await mkdir(this.tempDir, { recursive: true });
    const temp = path.join(this.tempDir, randomUUID());
    try {
      const hash = createHash('sha256');
      const handle = await open(temp, 'wx');
      let size: number;
      try {
        size = await writeHashed(handle, data, hash);
        await handle.sync();
      } finally {
        await handle.close();
      }
      const digest = `sha256:${hash.digest('hex')}`;
      if (expectedDigest !== undefined && digest !== expectedDigest) {
        throw new RegistryError(
          'DIGEST_INVALID',
          `content has digest ${digest}, not the expected ${expectedDigest}`,
          { expected: expectedDigest, actual: digest },
        );
      }
      await this.adopt(temp, digest);
      return { digest, size };
    } finally {
      await rm(temp, { force: true });
    }
  }

  /**
   * Makes an already verified and fsynced file (on the same filesystem) the blob `digest`.
   * When the blob exists already the file is left for the caller to remove.
   */
  async adopt(file: string, digest: string): Promise<void> {
    const target = this.pathOf(digest);
    if (await existsOnDisk(target)) return;
    // Two writers of the same content may race here; either rename wins with identical bytes.
    await renameDurably(file, target);
  }

  async stat(digest: string): Promise<{ size: number } | null> {
    const size = await sizeIfExists(this.pathOf(digest));
    return size === null ? null : { size };
  }

  async open(digest: string, range?: BlobRange): Promise<NodeJS.ReadableStream | null> {
    const file = this.pathOf(digest);
    const size = await sizeIfExists(file);
    if (size === null) return null;
    if (range && (range.start < 0 || range.end < range.start || range.end >= size)) {
      throw new RegistryError(
        'SIZE_INVALID',
        `range ${range.start}-${range.end} is outside the blob (${size} bytes)`,
        {
          size,
        },
        416,
      );
    }
    return createReadStream(file, range ? { start: range.start, end: range.end } : {});
  }
}

/**
 * Writes all of `data` at the handle's position, feeding every byte to `hash`; returns the
 * number of bytes written. Backpressure comes from awaiting each write.
 */
export async function writeHashed(
  handle: FileHandle,
  data: BlobSource,
  hash: Hash,
): Promise<number> {
  if (Buffer.isBuffer(data)) {
    hash.update(data);
    await writeAll(handle, data);
    return data.length;
  }
  let size = 0;
  for await (const chunk of data as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    hash.update(bytes);
    await writeAll(handle, bytes);
    size += bytes.length;
  }
  return size;
}

async function writeAll(handle: FileHandle, bytes: Buffer): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}
