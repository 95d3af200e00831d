/**
 * The registry's catalog: what is stored, read for people (repositories, tags, sizes, layers,
 * configs, platforms) and who pushed each manifest. Other subsystems import from here only.
 */
export {
  ImageCatalog,
  type ManifestDetail,
  type RepositorySummary,
  type TagSummary,
} from './catalog.js';
export type { ImageConfigView, PlatformView } from './image-reader.js';
export { registryCatalogMigrations, type RegistryCatalogTables } from './migrations.js';
export { recordPipelinePushes, type RunningRun } from './pipeline-pushes.js';
export { PushLog, type ImagePush, type PushView } from './push-log.js';
export { catalogRoutes, type CatalogRoutesOptions } from './routes.js';
