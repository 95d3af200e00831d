/**
 * The seam between the registry and where blob bytes live. Every blob and every manifest is
 * stored once, by its sha256 digest, shared by all repositories; what a repository contains
 * (links, tags) is bookkeeping the registry keeps on local disk beside it.
 *
 * Drivers: `filesystem.ts` (the default, under `<dataDir>/registry/blobs/`) and `s3.ts` (any
 * S3-compatible bucket). Both stage incoming bytes in a local directory (`stagingDir`) while
 * hashing them, so a blob is verified before any driver makes it visible; a driver's own job
 * starts at `adopt`, with a complete, verified file.
 */

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

export interface BlobInfo {
  size: number;
  /** When the blob was written (the filesystem's mtime, S3's LastModified). */
  modifiedAt: Date;
}

export interface ListedBlob extends BlobInfo {
  digest: string;
}

export const storageDrivers = ['filesystem', 's3'] as const;
export type StorageDriverName = (typeof storageDrivers)[number];

export interface BlobStorage {
  readonly driver: StorageDriverName;
  /**
   * A local directory for bytes on their way in (blob writes, upload sessions' closing step).
   * For the filesystem driver it is on the same filesystem as the blobs, so adopting is a rename.
   */
  readonly stagingDir: string;
  /**
   * Streams `data` to `stagingDir` while hashing it, checks `expectedDigest` (DIGEST_INVALID
   * otherwise), and only then makes it visible under its digest. Idempotent: storing content
   * that is already there changes nothing. A source that fails part-way leaves nothing visible.
   */
  put(data: BlobSource, expectedDigest?: string): Promise<StoredBlob>;
  /**
   * Makes `file`, a local file whose sha256 the caller verified to be `digest`, the blob
   * `digest`. The filesystem driver moves the file; S3 uploads it (multipart when large). The
   * file may be gone afterwards; the caller removes it if not. Visible only once complete.
   */
  adopt(file: string, digest: string): Promise<void>;
  stat(digest: string): Promise<BlobInfo | null>;
  /** The blob's bytes, or the inclusive `range` of them (416 SIZE_INVALID outside the blob). */
  open(digest: string, range?: BlobRange): Promise<NodeJS.ReadableStream | null>;
  /** Removes the blob; nothing happens when it is not there. Only garbage collection calls it. */
  delete(digest: string): Promise<void>;
  /** Every stored blob, in no particular order (for garbage collection and usage). */
  list(): AsyncIterable<ListedBlob>;
}

export interface S3StorageConfig {
  driver: 's3';
  /** `https://s3.example.com` for S3-compatible servers; absent for AWS itself. */
  endpoint?: string;
  bucket: string;
  region: string;
  /** Key prefix inside the bucket, e.g. `valve` for `valve/blobs/sha256/...`; may be empty. */
  prefix: string;
  /** Absent: the AWS SDK's default chain (AWS_* env vars, shared config, instance roles). */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`. */
  forcePathStyle: boolean;
}

export type RegistryStorageConfig = { driver: 'filesystem' } | S3StorageConfig;

/** A whole blob in memory: for manifests and configs, which are small. */
export async function readBlob(storage: BlobStorage, digest: string): Promise<Buffer | null> {
  const stream = await storage.open(digest);
  if (!stream) return null;
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
  return Buffer.concat(chunks);
}

/** The range checks every driver makes the same way. */
export function isRangeInside(range: BlobRange, size: number): boolean {
  return range.start >= 0 && range.end >= range.start && range.end < size;
}
