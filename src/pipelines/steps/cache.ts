import { z } from 'zod';
import { cacheKeySchema, cacheVersion, CacheStore, defaultCacheLimits } from './cache-store.js';
import { defineStep, type StepContext } from './step.js';
import { normalizePatterns, selectFiles, splitList } from './workspace-files.js';

/**
 * `valve/cache`, `valve/cache-restore` and `valve/cache-save` share these inputs and the two
 * halves below. Keys follow actions/cache: restoring tries the exact key, then prefixes; a
 * save never replaces an existing key.
 */

const pathList = z
  .string()
  .transform(splitList)
  .refine((paths) => paths.length > 0, 'expected at least one path or glob');

const restoreKeyList = z
  .string()
  .default('')
  .transform((value) =>
    value
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean),
  )
  .pipe(z.array(cacheKeySchema));

const flag = z
  .enum(['true', 'false'])
  .default('false')
  .transform((value) => value === 'true');

export const restoreInputs = z.strictObject({
  path: pathList,
  key: cacheKeySchema,
  'restore-keys': restoreKeyList,
  'fail-on-cache-miss': flag,
  'lookup-only': flag,
});

export const saveInputs = z.strictObject({ path: pathList, key: cacheKeySchema });

export interface RestoreOutcome {
  /** Whether the exact key was found. */
  exact: boolean;
  /** The key of the entry restored (or found, with lookup-only); '' on a miss. */
  matchedKey: string;
}

/** The restore half: finds the entry and unpacks it into the workspace. */
export async function restoreCache(
  context: StepContext,
  inputs: z.infer<typeof restoreInputs>,
): Promise<RestoreOutcome> {
  const paths = normalizePatterns(context.workspace, inputs.path, 'with.path');
  const store = new CacheStore(context.storage.cache, defaultCacheLimits);
  const found = await store.find({
    key: inputs.key,
    restoreKeys: inputs['restore-keys'],
    version: cacheVersion(paths),
    ref: context.run.ref,
  });
  if (!found) {
    if (inputs['fail-on-cache-miss']) {
      throw new Error(
        `no cache entry for key ${inputs.key}${inputs['restore-keys'].length ? ` or restore keys ${inputs['restore-keys'].join(', ')}` : ''}`,
      );
    }
    context.log(`cache miss: nothing saved under ${inputs.key} for these paths`);
    return { exact: false, matchedKey: '' };
  }
  const { entry, exact } = found;
  const size = `${(entry.size / 1024 / 1024).toFixed(1)} MiB`;
  if (inputs['lookup-only']) {
    context.log(`cache ${exact ? 'hit' : 'match'}: ${entry.key} (${size}), not restored`);
    return { exact, matchedKey: entry.key };
  }
  try {
    const written = await store.restore(entry, context.workspace, context.signal);
    context.log(
      `cache ${exact ? 'hit' : `restored from ${entry.key}`}: ${written.length} entries (${size})`,
    );
  } catch (error) {
    if (context.signal.aborted) throw error;
    // Like actions/cache: a cache that cannot be read is a miss, not a failed job.
    context.log(`warning: cache entry ${entry.key} could not be restored: ${message(error)}`);
    return { exact: false, matchedKey: '' };
  }
  return { exact, matchedKey: entry.key };
}

/** The save half: archives the paths under the key unless that key is taken. */
export async function saveCache(
  context: StepContext,
  inputs: z.infer<typeof saveInputs>,
): Promise<boolean> {
  const paths = normalizePatterns(context.workspace, inputs.path, 'with.path');
  const { entries } = await selectFiles(context.workspace, paths, {
    dot: true,
    what: 'with.path',
    signal: context.signal,
  });
  if (entries.length === 0) {
    context.log(`warning: no files match ${paths.join(' ')}; nothing cached`);
    return false;
  }
  const store = new CacheStore(context.storage.cache, defaultCacheLimits);
  const result = await store.save({
    key: inputs.key,
    version: cacheVersion(paths),
    ref: context.run.ref,
    entries,
    signal: context.signal,
  });
  if (!result.saved) {
    context.log(`cache not saved: ${result.reason}`);
    return false;
  }
  context.log(
    `cache saved: ${inputs.key} (${result.entry.files} entries, ${result.entry.size} bytes)`,
  );
  for (const gone of result.evicted) context.log(`cache evicted: ${gone.key}`);
  return true;
}

export const cacheStep = defineStep({
  name: 'cache',
  description:
    'Restore files from the app cache by key; save them when the job succeeds without an exact hit.',
  inputs: restoreInputs,
  async run(context, inputs) {
    const restored = await restoreCache(context, inputs);
    if (!restored.exact) {
      context.addPostStep(`Save cache ${inputs.key}`, async (job) => {
        if (job.status !== 'success') {
          context.log(`cache not saved: the job did not succeed (${job.status})`);
          return;
        }
        // A failure here is the runner's to report; it does not change the job's outcome.
        await saveCache(context, { path: inputs.path, key: inputs.key });
      });
    }
    return {
      'cache-hit': String(restored.exact),
      'cache-matched-key': restored.matchedKey,
    };
  },
});

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
