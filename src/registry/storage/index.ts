import path from 'node:path';
import type { BlobStorage, RegistryStorageConfig } from './driver.js';
import { FilesystemStorage } from './filesystem.js';
import { S3Storage } from './s3.js';

export * from './driver.js';
export { FilesystemStorage } from './filesystem.js';
export { S3Storage, type S3StorageOptions } from './s3.js';
export { stageBlob, writeHashed, type StagedBlob } from './staging.js';

/**
 * The configured driver for the registry rooted at `root` (`<dataDir>/registry`). Staging stays
 * on local disk for every driver (`<root>/tmp`), as upload sessions do (`<root>/uploads`).
 */
export function openBlobStorage(
  config: RegistryStorageConfig = { driver: 'filesystem' },
  root: string,
): BlobStorage {
  switch (config.driver) {
    case 'filesystem':
      return new FilesystemStorage(root);
    case 's3':
      // Field by field: the secret is a non-enumerable property (config.ts), which `...` drops.
      return new S3Storage({
        endpoint: config.endpoint,
        bucket: config.bucket,
        region: config.region,
        prefix: config.prefix,
        accessKeyId: config.accessKeyId,
        secretAccessKey: config.secretAccessKey,
        forcePathStyle: config.forcePathStyle,
        stagingDir: path.join(root, 'tmp'),
      });
  }
}
