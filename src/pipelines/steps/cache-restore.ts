import { restoreCache, restoreInputs } from './cache.js';
import { defineStep } from './step.js';

/** The restore half of `valve/cache` alone: nothing is saved at the end of the job. */
export const cacheRestoreStep = defineStep({
  name: 'cache-restore',
  description: 'Restore files from the app cache by key, without saving at the end.',
  inputs: restoreInputs,
  async run(context, inputs) {
    const restored = await restoreCache(context, inputs);
    return {
      'cache-hit': String(restored.exact),
      'cache-primary-key': inputs.key,
      'cache-matched-key': restored.matchedKey,
    };
  },
});
