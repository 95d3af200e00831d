import { buildImageStep } from './build-image.js';
import { checkout } from './checkout.js';
import { deployStep } from './deploy.js';
import type { BuiltinStep } from './step.js';

export type { StepContext, StepServices, BuiltinStep } from './step.js';

/** The built-in step library, by the name used in `uses: valve/<name>@v1`. */
export const builtinSteps: ReadonlyMap<string, BuiltinStep> = new Map(
  [checkout, buildImageStep, deployStep].map((step) => [step.name, step as unknown as BuiltinStep]),
);
