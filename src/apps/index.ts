/** apps: an app is a source repo, a deploy repo and an image repository owned by one team. */
export { AppService, sourceRepoPath, type AppRecord } from './service.js';
export { appMigrations, type AppTables } from './migrations.js';
export { appRoutes } from './routes.js';
export { listTemplates } from './templates.js';
