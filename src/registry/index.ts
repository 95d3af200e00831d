/**
 * The registry subsystem's interface: storage and the internal API (`Registry`), the OCI
 * Distribution HTTP API (`registryRoutes`), its token flow (`registryTokenRoutes`), and the
 * spec's errors. Other subsystems import from here only.
 */
export {
  Registry,
  type PutManifestOptions,
  type RegistryOptions,
  type StoredManifest,
  type TagPage,
} from './registry.js';
export type {
  BlobRange,
  BlobSource,
  StoredBlob,
  RegistryStorageConfig,
  S3StorageConfig,
} from './storage/index.js';
export type { UploadSessions, UploadStatus, AbandonedUpload } from './upload-sessions.js';
export type { GarbageCollectionOptions, GarbageReport } from './gc.js';
export { formatBytes, type TeamUsage } from './quota.js';
export { registryAdminRoutes, type RegistryAdminRoutesOptions } from './api-admin.js';
export {
  registryRoutes,
  BASIC_CHALLENGE,
  type AccessDecision,
  type ChallengeScope,
  type RegistryAction,
  type RegistryRoutesOptions,
} from './routes.js';
export {
  RegistryTokens,
  REGISTRY_SERVICE,
  REGISTRY_TOKEN_PATH,
  acceptRegistryTokens,
  bearerRegistryToken,
  covers,
  grantAccess,
  isJwtShaped,
  parseScopes,
  registryTokenRoutes,
  type IssuedToken,
  type RegistryTokenClaims,
  type RegistryTokenRoutesOptions,
  type ResourceAccess,
} from './token.js';
export {
  RegistryError,
  isRegistryError,
  registryErrorTable,
  type RegistryErrorCode,
} from './errors.js';
export { mediaTypes, manifestMediaTypes, type Descriptor } from './manifests.js';
export { validateRepositoryName, validateTag, isSha256Digest } from './names.js';
export { hostPlatform, type Platform } from './platform.js';
