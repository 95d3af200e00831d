/** deploy: app spec, rendering, the deploy repo, the reconciler and targets. */
export {
  DeployService,
  deployRepoPath,
  type EnvironmentView,
  type DiffView,
  type SyncView,
} from './service.js';
export { deploySettingsFromEnv } from './deploy-settings.js';
export { deployRoutes } from './routes.js';
export {
  TargetRegistry,
  registryPullDrivers,
  type TargetView,
  type SecretSealer,
} from './targets-registry.js';
export type { ApprovalView, ChangeResult, DeployRecord } from './promotion.js';
export type { SyncPolicy, SyncStatus } from './reconciler.js';
export type { DiffItem } from './diff.js';
export { deployMigrations, type DeployTables } from './migrations.js';
export {
  parseAppSpec,
  parseAppSpecWithSources,
  loadAppSpec,
  environmentSettings,
  plainVariables,
  APP_SPEC_FILE,
  containerPort,
  unknownApprovingTeam,
  defaultSyncOptions,
  type AppSpec,
  type EnvironmentSettings,
  type SyncOptions,
} from './appspec.js';
export {
  renderEnvironment,
  renderEnvironmentObjects,
  RENDERED_FILES,
  type RenderInput,
} from './render.js';
export {
  readDesiredEnvironment,
  MANIFEST_KINDS,
  type DesiredEnvironment,
  type DesiredWorkload,
  type ManifestResource,
} from './manifests.js';
export { rolloutSpecSchema, defaultRollout, type RolloutSpec } from './rollout-spec.js';
export { argoApplication, type ArgoApplicationInput } from './export/argocd.js';
export { helmChart, type HelmChartOptions } from './export/helm.js';
export type { Target, ImageSource, WorkloadSpec, WorkloadStatus } from './targets/target.js';
