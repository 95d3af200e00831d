import { saveCache, saveInputs } from './cache.js';
import { defineStep } from './step.js';

/** The save half of `valve/cache` alone, run where the step stands (not at the job's end). */
export const cacheSaveStep = defineStep({
  name: 'cache-save',
  description: 'Save files to the app cache under a key, unless that key exists.',
  inputs: saveInputs,
  async run(context, inputs) {
    return { saved: String(await saveCache(context, inputs)) };
  },
});
