import type { Registry } from '../index.js';
import { ImageReader } from './image-reader.js';
import type { PushLog } from './push-log.js';

/** A run that is executing now. */
export interface RunningRun {
  id: string;
  number: number;
  actor: string | null;
  commit: string;
}

/** The label the builder (src/build) puts on every image: the commit it was built from. */
const REVISION_LABEL = 'org.opencontainers.image.revision';

/**
 * The registry as the pipelines' built-in steps get it: the same store, except that every
 * manifest a step puts (the `build-image` step, through the builder) is recorded in the push
 * log as pushed `via: 'pipeline'`.
 *
 * Steps share one services object, so the push does not say which run made it. It is the run
 * of the repository's app that is executing now at the commit the image's revision label
 * names; when that is not exactly one run (two workflows building the same commit at once),
 * the push is recorded without a run, and with the user only if every candidate has the same.
 */
export function recordPipelinePushes(
  registry: Registry,
  pushes: PushLog,
  runningRuns: (team: string, app: string) => Promise<RunningRun[]>,
): Registry {
  // Everything else is the registry's own (a prototype lookup), `this` included.
  const recording = Object.create(registry) as Registry;
  const putManifest: Registry['putManifest'] = async (...args) => {
    const stored = await registry.putManifest(...args);
    const [repo, reference, body, , options] = args;
    const reader = new ImageReader(registry, repo);
    const manifest = await reader.manifest(stored.digest);
    const revision =
      manifest?.config && (await reader.config(manifest.config)).labels[REVISION_LABEL];
    const [team = '', app = ''] = repo.split('/');
    const candidates = revision
      ? (await runningRuns(team, app)).filter((run) => run.commit === revision)
      : [];
    const actors = new Set(candidates.map((run) => run.actor));
    const tags = [
      ...(reference.includes(':') ? [] : [reference]),
      ...(options?.tags ?? []).filter((tag) => tag !== reference),
    ];
    await pushes.record({
      repo,
      digest: stored.digest,
      mediaType: manifest?.mediaType ?? args[3],
      size: body.length,
      tags,
      pushedBy: actors.size === 1 ? ([...actors][0] ?? null) : null,
      via: 'pipeline',
      run: candidates.length === 1 ? candidates[0] : null,
    });
    return stored;
  };
  recording.putManifest = putManifest;
  return recording;
}
