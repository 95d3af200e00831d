/** pipelines: workflow files, the run queue, executors, the built-in step library, run logs. */
export { PipelineService, type PushEvent } from './service.js';
export { pipelineMigrations, type PipelineTables } from './migrations.js';
export { RunLogStore } from './logs.js';
export { LocalExecutor } from './executors/local/index.js';
export { pipelineRoutes } from './routes.js';
export { parseWorkflow } from './workflow.js';
export { builtinSteps, type StepServices } from './steps/index.js';
