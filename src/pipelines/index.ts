/** pipelines: workflow files, the run queue, executors, the built-in step library, secrets, run logs. */
export { PipelineService, type PushEvent, type AppRef } from './service.js';
export { pipelineMigrations, type PipelineTables } from './migrations.js';
export { RunLogStore } from './logs.js';
export { createExecutors } from './executors/index.js';
export { pipelineRoutes } from './routes.js';
export { externalRoutes } from './external.js';
export { parseWorkflow } from './workflow.js';
export { builtinSteps, type StepServices } from './steps/index.js';
export { SecretCipher, SecretStore } from './secrets/index.js';
