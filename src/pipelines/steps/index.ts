import { buildImageStep } from './build-image.js';
import { cacheRestoreStep } from './cache-restore.js';
import { cacheSaveStep } from './cache-save.js';
import { cacheStep } from './cache.js';
import { checkout } from './checkout.js';
import { deployStep } from './deploy.js';
import { downloadArtifactStep } from './download-artifact.js';
import { notifyStep } from './notify.js';
import { pushImageStep } from './push-image.js';
import type { BuiltinStep } from './step.js';
import { testReportStep } from './test-report.js';
import { uploadArtifactStep } from './upload-artifact.js';

export type { BuiltinStep, JobStatus, PostStep, StepContext, StepServices } from './step.js';
export { jobStatuses } from './step.js';

/** The built-in step library, by the name used in `uses: valve/<name>@v1`. */
export const builtinSteps: ReadonlyMap<string, BuiltinStep> = new Map(
  [
    checkout,
    buildImageStep,
    deployStep,
    cacheStep,
    cacheRestoreStep,
    cacheSaveStep,
    uploadArtifactStep,
    downloadArtifactStep,
    testReportStep,
    notifyStep,
    pushImageStep,
  ].map((step) => [step.name, step as unknown as BuiltinStep]),
);
