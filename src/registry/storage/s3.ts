import { createReadStream } from 'node:fs';
import { stat as statFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { RegistryError } from '../errors.js';
import { sha256Hex } from '../names.js';
import {
  isRangeInside,
  type BlobInfo,
  type BlobRange,
  type BlobSource,
  type BlobStorage,
  type ListedBlob,
  type S3StorageConfig,
  type StoredBlob,
} from './driver.js';
import { putByStaging } from './staging.js';

export interface S3StorageOptions extends Omit<S3StorageConfig, 'driver'> {
  /** Local directory where blobs are staged and verified before they go up. */
  stagingDir: string;
  /** Blobs larger than this go up as a multipart upload in parts of this size (>= 5 MiB). */
  partSize?: number;
  /** Keys per list request (S3 answers at most 1000). */
  listPageSize?: number;
}

type Sdk = typeof import('@aws-sdk/client-s3') & {
  Upload: typeof import('@aws-sdk/lib-storage').Upload;
};

const MIN_PART_SIZE = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Blobs in an S3 bucket (AWS or any S3-compatible server), as objects
 * `<prefix>/blobs/sha256/<2 hex>/<hex>`, the filesystem driver's layout.
 *
 * Nothing unverified ever reaches a blob's key: bytes are staged and hashed in a local file
 * first (`stagingDir`, like upload sessions), and only a verified file is uploaded. A single
 * PutObject becomes visible atomically and carries the sha256 (`x-amz-checksum-sha256`, which
 * S3 checks); a multipart upload becomes visible only at CompleteMultipartUpload, and is
 * aborted on failure. The AWS SDK loads on first use, so a filesystem-only server never pays
 * for it.
 */
export class S3Storage implements BlobStorage {
  readonly driver = 's3';
  readonly stagingDir: string;
  private readonly bucket: string;
  private readonly base: string;
  private readonly partSize: number;
  private readonly listPageSize: number;
  private connection: Promise<{ client: S3Client; sdk: Sdk }> | null = null;

  constructor(private readonly options: S3StorageOptions) {
    this.stagingDir = options.stagingDir;
    this.bucket = options.bucket;
    const prefix = options.prefix.replace(/^\/+|\/+$/g, '');
    this.base = prefix === '' ? '' : `${prefix}/`;
    this.partSize = Math.max(MIN_PART_SIZE, options.partSize ?? DEFAULT_PART_SIZE);
    this.listPageSize = options.listPageSize ?? 1000;
  }

  /** Where the blobs are, for logs and errors: never the credentials. */
  get location(): string {
    return `s3://${this.bucket}/${this.base}${this.options.endpoint ? ` at ${this.options.endpoint}` : ''}`;
  }

  keyOf(digest: string): string {
    const hex = sha256Hex(digest);
    return `${this.base}blobs/sha256/${hex.slice(0, 2)}/${hex}`;
  }

  put(data: BlobSource, expectedDigest?: string): Promise<StoredBlob> {
    return putByStaging(this, data, expectedDigest);
  }

  async adopt(file: string, digest: string): Promise<void> {
    const { client, sdk } = await this.connect();
    if (await this.stat(digest)) return;
    const size = (await statFile(file)).size;
    const target = { Bucket: this.bucket, Key: this.keyOf(digest) };
    if (size <= this.partSize) {
      await client.send(
        new sdk.PutObjectCommand({
          ...target,
          Body: createReadStream(file),
          ContentLength: size,
          ContentType: 'application/octet-stream',
          // The digest is the sha256 of the content: S3 refuses the object if it arrives
          // altered. Servers that do not know the header ignore it.
          ChecksumSHA256: Buffer.from(sha256Hex(digest), 'hex').toString('base64'),
        }),
      );
    } else {
      await new sdk.Upload({
        client,
        params: {
          ...target,
          Body: createReadStream(file),
          ContentType: 'application/octet-stream',
        },
        partSize: this.partSize,
        queueSize: 4,
        leavePartsOnError: false,
      }).done();
    }
    const stored = await this.stat(digest);
    if (stored?.size !== size) {
      await this.delete(digest);
      throw new Error(
        `${this.location}: ${target.Key} has ${stored?.size ?? 'no'} bytes after upload, expected ${size}`,
      );
    }
  }

  async stat(digest: string): Promise<BlobInfo | null> {
    const { client, sdk } = await this.connect();
    try {
      const head = await client.send(
        new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(digest) }),
      );
      return { size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async open(digest: string, range?: BlobRange): Promise<NodeJS.ReadableStream | null> {
    const { client, sdk } = await this.connect();
    if (range) {
      // S3 clips a range that runs past the end; the registry's contract is a 416 instead.
      const found = await this.stat(digest);
      if (!found) return null;
      if (!isRangeInside(range, found.size)) {
        throw new RegistryError(
          'SIZE_INVALID',
          `range ${range.start}-${range.end} is outside the blob (${found.size} bytes)`,
          { size: found.size },
          416,
        );
      }
    }
    try {
      const object = await client.send(
        new sdk.GetObjectCommand({
          Bucket: this.bucket,
          Key: this.keyOf(digest),
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      const body = object.Body as Readable;
      return range ? exactRange(body, object.ContentRange, range) : body;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async delete(digest: string): Promise<void> {
    const { client, sdk } = await this.connect();
    await client.send(
      new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(digest) }),
    );
  }

  async *list(): AsyncIterable<ListedBlob> {
    const { client, sdk } = await this.connect();
    const prefix = `${this.base}blobs/sha256/`;
    let token: string | undefined;
    do {
      const page = await client.send(
        new sdk.ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          MaxKeys: this.listPageSize,
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      for (const object of page.Contents ?? []) {
        const [dir, hex, ...rest] = (object.Key ?? '').slice(prefix.length).split('/');
        if (rest.length > 0 || !hex || !HEX64.test(hex) || dir !== hex.slice(0, 2)) continue;
        yield {
          digest: `sha256:${hex}`,
          size: object.Size ?? 0,
          modifiedAt: object.LastModified ?? new Date(0),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Closes the client's connections (tests; a server keeps its storage for its lifetime). */
  async close(): Promise<void> {
    if (this.connection) (await this.connection).client.destroy();
    this.connection = null;
  }

  private connect(): Promise<{ client: S3Client; sdk: Sdk }> {
    this.connection ??= (async () => {
      const [s3, storage] = await Promise.all([
        import('@aws-sdk/client-s3'),
        import('@aws-sdk/lib-storage'),
      ]);
      const sdk: Sdk = { ...s3, Upload: storage.Upload };
      const { endpoint, region, forcePathStyle, accessKeyId, secretAccessKey } = this.options;
      const client = new sdk.S3Client({
        region,
        forcePathStyle,
        ...(endpoint ? { endpoint } : {}),
        ...(accessKeyId && secretAccessKey
          ? { credentials: { accessKeyId, secretAccessKey } }
          : {}),
        // Only the checksums an operation requires: many S3-compatible servers reject the
        // SDK's default trailing CRC checksums. Integrity comes from the sha256 instead.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      });
      return { client, sdk };
    })();
    return this.connection;
  }
}

/**
 * The bytes of `range` from a ranged GET's body. HTTP lets a server answer more than asked (the
 * whole object with 200, or a wider range): then the extra bytes are cut here.
 */
function exactRange(body: Readable, contentRange: string | undefined, range: BlobRange): Readable {
  const served = /^bytes (\d+)-(\d+)\//.exec(contentRange ?? '');
  const start = served ? Number(served[1]) : 0;
  const end = served ? Number(served[2]) : Infinity;
  if (start === range.start && end === range.end) return body;
  if (start > range.start || end < range.end) {
    body.destroy();
    throw new Error(`asked for bytes ${range.start}-${range.end}, got ${contentRange ?? 'all'}`);
  }
  return Readable.from(slice(body, range.start - start, range.end - range.start + 1));
}

async function* slice(source: Readable, skip: number, length: number): AsyncIterable<Buffer> {
  for await (const chunk of source as AsyncIterable<Buffer>) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    const bytes = chunk.subarray(skip);
    skip = 0;
    if (bytes.length >= length) {
      yield bytes.subarray(0, length);
      return;
    }
    length -= bytes.length;
    yield bytes;
  }
}

function isNotFound(error: unknown): boolean {
  // HEAD answers 404 without a body (`NotFound`), GET says `NoSuchKey`. A missing bucket is
  // `NoSuchBucket` on GET and stays an error.
  const name = (error as { name?: string } | null)?.name;
  return name === 'NotFound' || name === 'NoSuchKey';
}
