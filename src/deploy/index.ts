/** deploy: app spec, rendering, the deploy repo, the reconciler and targets. */
export { DeployService, deployRepoPath, type EnvironmentView } from './service.js';
export { deployMigrations, type DeployTables } from './migrations.js';
export { parseAppSpec, APP_SPEC_FILE, containerPort, type AppSpec } from './appspec.js';
export type { Target, ImageSource, WorkloadSpec, WorkloadStatus } from './targets/target.js';
