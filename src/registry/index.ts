/**
 * The registry subsystem's interface: storage and the internal API (`Registry`), the OCI
 * Distribution HTTP API (`registryRoutes`), and the spec's errors. Other subsystems import
 * from here only.
 */
export {
  Registry,
  type PutManifestOptions,
  type RegistryOptions,
  type StoredManifest,
  type TagPage,
} from './registry.js';
export type { BlobRange, BlobSource, StoredBlob } from './blob-store.js';
export type { UploadSessions, UploadStatus } from './upload-sessions.js';
export {
  registryRoutes,
  type AccessDecision,
  type RegistryAction,
  type RegistryRoutesOptions,
} from './routes.js';
export {
  RegistryError,
  isRegistryError,
  registryErrorTable,
  type RegistryErrorCode,
} from './errors.js';
export { mediaTypes, manifestMediaTypes, type Descriptor } from './manifests.js';
export { validateRepositoryName, validateTag, isSha256Digest } from './names.js';
export { hostPlatform, type Platform } from './platform.js';
