import { createHash, randomUUID, type Hash } from 'node:crypto';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from '../errors.js';
import { sha256Hex } from '../names.js';
import type { BlobSource, BlobStorage, StoredBlob } from './driver.js';

/** A complete, fsynced local file whose sha256 is `digest`, not yet visible as a blob. */
export interface StagedBlob extends StoredBlob {
  file: string;
}

/**
 * Streams `data` into a new file in `dir` while hashing it, fsyncs it, and checks the digest.
 * On any failure (a wrong digest, a source that errors part-way) the file is removed.
 */
export async function stageBlob(
  dir: string,
  data: BlobSource,
  expectedDigest?: string,
): Promise<StagedBlob> {
  if (expectedDigest !== undefined) sha256Hex(expectedDigest);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, randomUUID());
  try {
    const hash = createHash('sha256');
    const handle = await open(file, 'wx');
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
    return { file, digest, size };
  } catch (error) {
    await rm(file, { force: true });
    throw error;
  }
}

/** `BlobStorage.put` for every driver: stage and verify locally, then adopt. */
export async function putByStaging(
  storage: BlobStorage,
  data: BlobSource,
  expectedDigest?: string,
): Promise<StoredBlob> {
  const staged = await stageBlob(storage.stagingDir, data, expectedDigest);
  try {
    await storage.adopt(staged.file, staged.digest);
    return { digest: staged.digest, size: staged.size };
  } finally {
    await rm(staged.file, { force: true });
  }
}

const WRITE_CHUNK = 1024 * 1024;

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
  // Socket chunks are up to 64 KiB; gathering them into ~1 MiB writes saves most of the
  // per-write cost of a large upload (bench/registry).
  let size = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (pendingBytes === 0) return;
    const joined = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    await writeAll(handle, joined);
  };
  for await (const chunk of data as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    hash.update(bytes);
    pending.push(bytes);
    pendingBytes += bytes.length;
    size += bytes.length;
    if (pendingBytes >= WRITE_CHUNK) await flush();
  }
  await flush();
  return size;
}

async function writeAll(handle: FileHandle, bytes: Buffer): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}
